"""How a data file's bytes are opened: the one place for compressed files and for bytes that do
not decode.

A gzip, bzip2 or xz file, or a zip archive of one file, is read through its decompressor,
whatever its name: ``open_bytes`` knows it by its first bytes (``compression``), and every
reader of CSV, LIBSVM and fastText text opens files through it; ``text_size`` estimates how
much text it holds (to judge whether it fits in memory). A file's kind by name (``.tsv``,
``.svm``) is read past the compression suffix (``kind_suffix``: ``data.tsv.gz`` is a TSV).
The file's identity (its SHA-256, the stream's cache key) is that of its bytes on disk,
compressed or not.

A zip archive of several files (an Excel workbook is one) is an error of ``open_bytes``, and
zstd (no decompressor in Python 3.11's library) one of ``encoding_error``, with what to do.
"""

from __future__ import annotations

import codecs
import io
import os
from pathlib import Path
from typing import BinaryIO

from .errors import DataError

#: decompressors of the standard library, by their files' first bytes
_COMPRESSIONS = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz",
                 b"PK\x03\x04": "zip"}
#: the names such files end in
COMPRESSION_SUFFIXES = (".gz", ".gzip", ".bz2", ".xz", ".zip")
#: the first bytes of files that are no text and cannot be read here, and what to do
_NOT_TEXT = ((b"\x28\xb5\x2f\xfd", "zstd-compressed file", "decompress it first (unzstd), or "
              "compress it with gzip, bzip2 or xz, which xent reads"),)


def codec_name(encoding: str) -> str | None:
    """Python's own name of a text encoding ("utf8", "UTF-8" -> "utf-8"); None for a name
    Python does not know."""
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        return None


def compression(path: str | os.PathLike) -> str | None:
    """"gzip", "bzip2", "xz" or "zip" for a file compressed so (by its first bytes), else None
    (and for a file that cannot be opened: opening it again says why)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(6)
    except OSError:
        return None
    return next((kind for magic, kind in _COMPRESSIONS.items() if head.startswith(magic)),
                None)


def open_bytes(path: str | os.PathLike, digest=None) -> BinaryIO:
    """The bytes of the file at ``path``, decompressed where it is compressed (a zip archive:
    its one file). ``digest`` (hashlib), if given, sees every byte of the file on disk: as
    they are read, or (a zip archive, read by seeking) in a pass before. The caller closes
    what this returns."""
    kind = compression(path)
    if digest is not None and kind == "zip":
        with open(path, "rb") as whole:
            for block in iter(lambda: whole.read(1 << 20), b""):
                digest.update(block)
        digest = None
    raw = open(path, "rb")  # noqa: SIM115 (closed with what is returned)
    if digest is not None:
        raw = hashing(raw, digest)
    if kind is None:
        return raw
    if kind == "zip":
        return _zip_member(path, raw)
    if kind == "gzip":
        import gzip

        return _closing(gzip.GzipFile(fileobj=raw, mode="rb"), raw)
    if kind == "bzip2":
        import bz2

        return _closing(bz2.BZ2File(raw, "rb"), raw)
    import lzma

    return _closing(lzma.LZMAFile(raw, "rb"), raw)


def _zip_member(path, raw) -> BinaryIO:
    """The one file of the zip archive ``raw`` (as Kaggle's data sets come); an archive of
    several (an Excel workbook is one) is an error."""
    import zipfile

    try:
        archive = zipfile.ZipFile(raw)
    except zipfile.BadZipFile as exc:
        raw.close()
        raise DataError(f"{path}: a damaged zip archive ({exc}); make or fetch it "
                        "again") from None
    members = [m for m in archive.infolist() if not m.is_dir()]
    if len(members) != 1:
        archive.close()
        raw.close()
        excel = any(m.filename.startswith("xl/") for m in members)
        what = "an Excel workbook" if excel else f"a zip archive of {len(members)} files"
        fix = "save the sheet as CSV" if excel else "extract the data file"
        raise DataError(f"{path}: {what}, not one data file: {fix}")
    return _closing(_closing(archive.open(members[0]), archive), raw)


def _closing(decompressed, raw):
    """``decompressed``, which closes ``raw`` with itself (the decompressors leave a file
    object they were given open)."""
    close = decompressed.close

    def close_both():
        try:
            close()
        finally:
            raw.close()

    decompressed.close = close_both
    return decompressed


#: compressed bytes decompressed to estimate a file's ratio (``text_size``), and the most
#: text they may give (a ratio past 64 is taken as 64)
SAMPLE_BYTES, SAMPLE_TEXT = 1 << 20, 64 << 20


def text_size(path: str | os.PathLike) -> int:
    """The bytes of the file's text: its size, or for a compressed file an estimate: a zip
    member's recorded size, else the size times the ratio of its first ``SAMPLE_BYTES`` (CSV
    text compresses 3 to 10 times; the whole file's ratio where it is smaller)."""
    import bz2
    import lzma
    import zipfile
    import zlib

    size = os.path.getsize(path)
    kind = compression(path)
    if kind is None:
        return size
    if kind == "zip":
        try:
            with zipfile.ZipFile(path) as archive:
                return sum(m.file_size for m in archive.infolist() if not m.is_dir())
        except zipfile.BadZipFile:  # damaged: reading it says so
            return size
    decompressor = {"gzip": lambda: zlib.decompressobj(wbits=31), "bzip2": bz2.BZ2Decompressor,
                    "xz": lzma.LZMADecompressor}[kind]()
    with open(path, "rb") as handle:
        head = handle.read(SAMPLE_BYTES)
    try:
        text = len(decompressor.decompress(head, SAMPLE_TEXT))
    except (OSError, EOFError, zlib.error, lzma.LZMAError):  # damaged: reading it says so
        return size
    return round(size * max(1.0, text / max(len(head), 1)))


def open_text(path: str | os.PathLike, encoding: str = "utf-8-sig",
              errors: str = "strict") -> io.TextIOWrapper:
    """The file's text (decompressed), for reading lines; newlines kept as written (csv's
    reader wants them so)."""
    return io.TextIOWrapper(open_bytes(path), encoding=encoding, errors=errors, newline="")


def hashing(handle, digest):
    """``handle`` (a binary file), adding every byte read from it to ``digest``."""
    return io.BufferedReader(_HashingReader(handle, digest))


class _HashingReader(io.RawIOBase):
    """A binary file that adds every byte read to a hash (so a file is parsed and hashed in
    one read)."""

    def __init__(self, handle, digest):
        self.handle, self.digest = handle, digest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = self.handle.readinto(buffer)
        if count:
            self.digest.update(memoryview(buffer)[:count])
        return count


def kind_suffix(path: str | os.PathLike) -> str:
    """The suffix that names the file's kind, lower case, past a compression suffix:
    ``data.tsv.gz`` -> ``.tsv``."""
    path = Path(path)
    if path.suffix.lower() in COMPRESSION_SUFFIXES:
        path = path.with_suffix("")
    return path.suffix.lower()


def decompression_failed(exc: Exception) -> bool:
    """Whether ``exc`` is a decompressor's error on data cut short or damaged: EOFError,
    zlib's and lzma's errors, or an OSError with no errno (gzip's BadGzipFile, bz2's "Invalid
    data stream")."""
    import lzma
    import zipfile
    import zlib

    return isinstance(exc, EOFError | zlib.error | lzma.LZMAError | zipfile.BadZipFile) or \
        (isinstance(exc, OSError) and exc.errno is None)


def read_failure(path: str | os.PathLike, exc: Exception) -> DataError | None:
    """The error for reading the file failing with ``exc``: a compressed file cut short or
    damaged (``decompression_failed``), or the system's error; None for an error of neither
    kind."""
    if decompression_failed(exc) and (compression(path) or not isinstance(exc, OSError)):
        return DataError(f"{path}: the {compression(path) or 'compressed'} data are cut short "
                         f"or damaged ({exc}); compress the file again")
    if isinstance(exc, OSError):
        return DataError(f"{path}: cannot read the file ({exc.strerror or exc})")
    return None


def raise_read_failure(path: str | os.PathLike, exc: Exception) -> None:
    """Raise ``read_failure``'s one-line error for ``exc``; ``exc`` itself if it is no
    failure to read."""
    failure = read_failure(path, exc)
    if failure is None:
        raise exc
    raise failure from None


def encoding_error(path: str | os.PathLike, encoding: str) -> DataError:
    """The error for a file whose text does not decode as ``encoding``: an archive or a
    compression not read here, by its first bytes; else the first byte that does not decode
    and its line, and the option that reads the file."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    for magic, what, fix in _NOT_TEXT:
        if head.startswith(magic):
            return DataError(f"{path}: a {what}, not a text file: {fix}")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) and codec_name(encoding) != "utf-16":
        return DataError(f"{path}: UTF-16 text (its first bytes are a byte-order mark; Excel "
                         "saves 'Unicode Text' so): pass --encoding utf-16")
    found = first_undecodable(path, encoding)
    where = f" (byte 0x{found[1]:02x} on line {found[0]:,})" if found else ""
    if codec_name(encoding) != "utf-8":
        return DataError(f"{path}: not {encoding} text{where}: name the file's encoding with "
                         "--encoding")
    return DataError(f"{path}: not UTF-8 text{where}: if it was saved in another encoding, "
                     "name it with --encoding (cp1252 or latin-1 for most Western European "
                     "spreadsheets), or save it as UTF-8")


def first_undecodable(path: str | os.PathLike, encoding: str) -> tuple[int, int] | None:
    """(line, byte) of the first byte of the file's text (decompressed) that ``encoding``
    cannot decode; None if every byte decodes. Read a megabyte at a time."""
    decoder = codecs.getincrementaldecoder(encoding)()
    line = 1
    with open_bytes(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:  # its object: the bytes held over, then block
                return line + exc.object[:exc.start].count(b"\n"), exc.object[exc.start]
            line += block.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        return line + exc.object[:exc.start].count(b"\n"), exc.object[exc.start]
    return None
