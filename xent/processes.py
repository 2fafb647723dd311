"""Work shared out among processes: sweep points and the folds of a cross-validated path.

``run_in_processes`` runs each task in a fresh process, at most ``jobs`` at once. A process
gets its own share of the cores (a slot: CPU affinity, and as many BLAS threads as cores), so
that tasks running side by side do not fight over the same cores; ignores Ctrl-C (the parent
takes it for everyone); and dies with its parent, however the parent ends. On Linux processes
are forked, so a task's arguments (the data, say) are not copied until written to.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import XentError


@dataclass(frozen=True)
class Task:
    """``function(*args)`` under ``name``; its result must pickle (it comes back through a
    pipe)."""

    name: str
    function: Callable
    args: tuple = ()


def core_slots(jobs: int) -> list[set[int] | None]:
    """The cores of each of ``jobs`` slots: the cores this process may use, dealt out in turn
    (None where they cannot be read: not Linux). Under a container's CPU quota, only as many
    of its cores as the quota allows (``threads.available_cores``), so that the slots' threads add
    up to the quota, not to the host's cores."""
    from .threads import available_cores

    try:
        cores = sorted(os.sched_getaffinity(0))[:available_cores()]
    except AttributeError:
        return [None] * jobs
    if jobs >= len(cores):
        return [{cores[i % len(cores)]} for i in range(jobs)]
    return [set(cores[i::jobs]) for i in range(jobs)]


def run_in_processes(tasks: Sequence[Task], jobs: int,
                     on_event: Callable[[Task, str, Any], None]) -> None:
    """Run ``tasks``, each in a process of its own, ``jobs`` at a time.

    ``on_event(task, what, result)`` hears "started" (result None) and "done" in the parent.
    A task's XentError is raised here; a crash (a bug) becomes a XentError with its traceback.
    A KeyboardInterrupt in the parent (Ctrl-C, or SIGTERM as the command line maps it) ends the
    running processes within a couple of seconds and starts no more.
    """
    # fork on Linux, asked for by name (Python 3.14 defaults to forkserver): the tasks' data
    # and closures reach the children without pickling
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else None)
    slots = core_slots(jobs)
    free = list(range(jobs))
    waiting, running = list(tasks), {}  # connection -> (process, task, slot)
    try:
        while waiting or running:
            while waiting and free:
                task, slot = waiting.pop(0), free.pop(0)
                receiver, sender = context.Pipe(duplex=False)
                process = context.Process(target=_task_process, name=f"xent-{task.name}",
                                          args=(sender, task, slots[slot], os.getpid()))
                process.start()
                sender.close()
                running[receiver] = (process, task, slot)
                on_event(task, "started", None)
            for receiver in multiprocessing.connection.wait(list(running)):
                process, task, slot = running.pop(receiver)
                free.append(slot)
                try:
                    kind, payload = receiver.recv()
                except EOFError:
                    kind, payload = "lost", None
                process.join()
                if kind == "done":
                    on_event(task, "done", payload)
                elif kind == "error":
                    raise payload
                else:
                    raise XentError(f"{task.name} ended without a result (exit code "
                                    f"{process.exitcode}){': ' + payload if payload else ''}")
    finally:
        end_processes(process for process, _, _ in running.values())


def end_processes(processes, grace: float = 2.0) -> None:
    """SIGTERM to each process still running, then SIGKILL to any alive after ``grace``."""
    processes = [p for p in processes if p.is_alive()]
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + grace
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


def _task_process(sender, task: Task, cores: set[int] | None, parent: int) -> None:
    """One task in its own process: on its share of the cores, dies with the parent (SIGTERM
    ends it at once), leaves Ctrl-C to the parent, and sends back ("done", result) or
    ("error", the XentError) or ("crash", a traceback)."""
    from threadpoolctl import threadpool_limits

    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent's
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler, forked with us
    if cores is not None:
        os.sched_setaffinity(0, cores)  # xent's own threads count these (threads.available_cores)
    threadpool_limits(len(cores) if cores else 1)
    try:
        message = ("done", task.function(*task.args))
    except XentError as exc:
        message = ("error", exc)
    except Exception:  # a bug: the parent shows its traceback
        message = ("crash", traceback.format_exc())
    sender.send(message)
    sender.close()


#: glibc's mallopt parameter for the size from which an allocation gets pages of its own
_M_MMAP_THRESHOLD = -3
#: arrays of this size and more get pages of their own from the operating system
OWN_PAGES_FROM = 1 << 20


def large_arrays_outside_the_heap() -> None:
    """Make every allocation of ``OWN_PAGES_FROM`` bytes or more get pages of its own from the
    operating system (glibc's M_MMAP_THRESHOLD; nothing where there is no glibc), which go
    back to it when the array is freed. By default glibc raises that threshold, up to 32 MB,
    each time such an array is freed; the arrays below it then come from its heap, which keeps
    their memory resident after they are freed. A text run's reading, training and writing
    left about 60 MB so on top of its arrays (``bench/bench_text.py``'s memory line, measured).
    For the ``xent`` command, whose process this is; a library does not change its host's
    allocator."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, OWN_PAGES_FROM)


def _die_with_parent(parent: int) -> None:
    """Ask Linux to send this process SIGTERM when its parent (pid ``parent``) dies, even by
    SIGKILL (elsewhere the parent's own clean-up is all there is)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the request
        os._exit(1)
