"""Writing files so that a crash never leaves a truncated one: write a temporary file in the
same directory, flush it to disk, then rename it over the target (atomic on POSIX)."""

from __future__ import annotations

import contextlib
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path``, on error it is
    removed and ``path`` is untouched. ``mode`` is "w" (text, UTF-8) or "wb"."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # name the file asked for, not the temporary one
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
    try:
        os.fchmod(fd, _mode_for(path))  # mkstemp makes 0600; a new file's mode is the umask's
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding, newline="" if encoding else None) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # a full disk says so without naming the file: name it
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if exc.filename is None:
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _mode_for(path: Path) -> int:
    """The permission bits a file written to ``path`` gets: an existing file's own, else
    what ``open`` would give a new one (0666 less the umask)."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_npz(path: str | os.PathLike, arrays: dict) -> None:
    """Write ``arrays`` as an .npz (read by ``np.load``) atomically and byte-for-byte
    reproducibly: np.savez stamps each member with the current time, this uses a fixed one.
    Object arrays are refused, so the file never needs pickle to load."""
    with atomic_open(path, "wb") as handle, \
            zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            array = np.asanyarray(array)
            # written straight into the archive, not built in memory first: a model of hashed
            # text holds W arrays of tens of MB
            large = array.nbytes > (1 << 31) - (1 << 20)
            with archive.open(info, "w", force_zip64=large) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
