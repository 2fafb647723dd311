"""Threads: how many one evaluation may use, the shared pool they run on, and the rule by
which work is shared out among them (``on_threads``).

Every core the process may use is the default (its CPU affinity, capped by a container's CPU
quota); ``--threads``, ``n_jobs`` and $XENT_THREADS ask for fewer (``thread_count``). The
threads are one pool, made once a process (a forked child makes its own), and BLAS is kept to
one thread while they run, so that two pools of threads do not fight over the same cores.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

from threadpoolctl import ThreadpoolController

from .errors import ConfigError


def available_cores() -> int:
    """The cores this process may use: those its CPU affinity allows, and no more than a
    container's CPU quota (``cgroup_cpu_limit``): a container given 2 CPUs of a 64-core host
    sees all 64 in its affinity, and 64 threads there would queue for 2 CPUs' worth of time."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit(CGROUP_ROOT)
    return max(1, min(cores, limit) if limit else cores)


#: where Linux mounts the control groups (in a container, its own group's files)
CGROUP_ROOT = "/sys/fs/cgroup"


@functools.lru_cache(maxsize=8)
def cgroup_cpu_limit(root: str) -> int | None:
    """The CPUs a Linux control group's CFS quota allows, rounded up; None where there is no
    quota (or no such files: not Linux). cgroup v2: ``cpu.max`` holds "<quota> <period>" or
    "max <period>"; v1: ``cpu/cpu.cfs_quota_us`` (-1: none) over ``cpu/cpu.cfs_period_us``,
    in microseconds. Read once a process (a forked one shares its parent's group)."""
    quota_and_period = _words(os.path.join(root, "cpu.max")) or \
        _words(os.path.join(root, "cpu", "cpu.cfs_quota_us")) + \
        _words(os.path.join(root, "cpu", "cpu.cfs_period_us"))
    if len(quota_and_period) != 2:
        return None
    quota, period = quota_and_period
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:  # "max"
        return None
    return -(-quota_us // period_us) if quota_us > 0 and period_us > 0 else None


def _words(path: str) -> list[str]:
    """The words of a small text file; none where it cannot be read."""
    try:
        with open(path) as file:
            return file.read().split()
    except OSError:
        return []


_THREADS: int | None = None  # set by ``use_threads``


def thread_count() -> int:
    """Threads for one evaluation: ``use_threads``'s number, else $XENT_THREADS, else every
    core this process may use; never more than those cores (a sweep's or a path's process
    has its own share of them)."""
    cores = available_cores()
    wanted = _THREADS
    if wanted is None and os.environ.get("XENT_THREADS", "").strip():
        text = os.environ["XENT_THREADS"].strip()
        if not text.isdigit():
            raise ConfigError(f"XENT_THREADS={text!r}: give a whole number of threads (0: "
                              "every core)")
        wanted = int(text) or None
    return cores if wanted is None else max(1, min(wanted, cores))


@contextlib.contextmanager
def use_threads(n: int | None):
    """Evaluations inside use ``n`` threads (None or 0: the default, ``thread_count``)."""
    global _THREADS
    previous, _THREADS = _THREADS, (n or None)
    try:
        yield
    finally:
        _THREADS = previous


_POOL: ThreadPoolExecutor | None = None
_BLAS: ThreadpoolController | None = None


def single_threaded_blas():
    """A context in which every BLAS library of the process uses one thread (numpy's and
    scipy's each bring an OpenBLAS pool; on few cores the two pools slow each other down)."""
    global _BLAS
    if _BLAS is None:
        _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas")


def _forget_the_pool():
    """In a forked child: the parent's pool came with the process but its threads did not, and
    work handed to it would wait for ever; the child makes a pool of its own on first use."""
    global _POOL
    _POOL = None


if os.name == "posix":  # elsewhere processes are spawned, not forked
    os.register_at_fork(after_in_child=_forget_the_pool)


def thread_pool(n_threads: int):
    """The shared worker pool, and a context that keeps BLAS single-threaded while our threads
    run (two pools of threads on the same cores slow each other down)."""
    global _POOL
    if _POOL is None or _POOL._max_workers < n_threads:
        _POOL = ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="xent")
    return _POOL, single_threaded_blas()


#: items of work a thread, where work can be cut finer (``on_threads``): a thread slowed by
#: another process on its core (or on a slower core) then takes fewer, where one share a thread
#: waited for the slowest. More items balance finer; each costs a call (and, for a sum, a
#: buffer to add up)
CHUNKS_PER_THREAD = 4


def items_for(threads: int, most: int) -> int:
    """How many items to cut work into for ``threads`` threads taking them in turn
    (``on_threads``): ``CHUNKS_PER_THREAD`` a thread, at most ``most`` (what the work allows:
    rows enough, buffers that fit), at least one."""
    return max(1, min(threads * CHUNKS_PER_THREAD, most))


_TAKER = threading.local()  # .busy: this thread is taking one of on_threads' items


def on_threads(work, items, threads: int) -> list:
    """``[work(item) for item in items]``, on ``threads`` threads, each taking the next item
    not yet taken: the calling thread and ``threads - 1`` of the shared pool's (BLAS
    single-threaded meanwhile).

    A thread on a busy or slower core (another process on it, a hypervisor's stolen time, an
    efficiency core) takes fewer items, where a fixed share per thread would make every thread
    wait for the slowest: cut the work into a few items per thread. The calling thread takes
    items too, rather than waiting for the pool's threads: it is already running, where each
    of them must be woken (tens of microseconds, more on a virtual machine), and at the end
    it need not be woken itself unless a pool thread still holds an item. The results come
    back in the items' order whichever thread ran each, so sums added in that order do not
    depend on timing. If an item's work raises, no thread takes another item, and the error
    is raised here once every thread has stopped; Ctrl-C stops them taking more and is raised
    at once. Called from an item's work, it runs the items on that thread, one after
    another: handed to the pool, they would wait for threads busy waiting on them."""
    if threads <= 1 or len(items) <= 1 or getattr(_TAKER, "busy", False):
        return [work(item) for item in items]
    results = [None] * len(items)
    untaken = iter(range(len(items)))
    lock, failed = threading.Lock(), threading.Event()

    def take_in_turn():
        _TAKER.busy = True
        try:
            while not failed.is_set():
                with lock:  # one taker at a time: no item is run twice or skipped
                    index = next(untaken, None)
                if index is None:
                    return
                try:
                    results[index] = work(items[index])
                except BaseException:
                    failed.set()
                    raise
        finally:
            _TAKER.busy = False

    pool, single_blas = thread_pool(threads - 1)
    with single_blas:
        takers = [pool.submit(take_in_turn) for _ in range(min(threads, len(items)) - 1)]
        try:
            take_in_turn()
            wait(takers)
        except Exception:
            failed.set()
            wait(takers)  # the others stop after the item they hold: none runs on after this
            raise
        except BaseException:  # Ctrl-C, in an item or between: the threads take no more
            failed.set()
            raise
    for taker in takers:
        taker.result()  # raises the taker's error, if it had one
    return results
