"""How work is shared out among threads: ``threads.on_threads`` (each thread takes the next item
not yet taken) and the chunks of rows ``loss.sums`` cuts for it."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import share_out

from xent import kernels, loss
from xent.links import get_link
from xent.loss import labels_target, sums
from xent.threads import CHUNKS_PER_THREAD, on_threads, thread_pool


def test_results_come_in_the_items_order_each_item_run_once():
    ran, lock = [], threading.Lock()

    def work(item):
        with lock:
            ran.append(item)
        return item * item

    assert on_threads(work, list(range(50)), 3) == [i * i for i in range(50)]
    assert sorted(ran) == list(range(50))


def test_no_more_threads_run_at_once_than_asked_even_on_a_larger_pool():
    thread_pool(4)  # the shared pool now has four workers
    running, most, lock = 0, 0, threading.Lock()
    both_running = threading.Barrier(2, timeout=10)

    def work(item):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        if item < 2:
            both_running.wait()  # the first two items run at once: two threads are at work
        with lock:
            running -= 1
        return threading.get_ident()

    workers = on_threads(work, list(range(40)), 2)
    assert most == 2 and len(set(workers)) == 2


def test_a_thread_held_up_takes_no_more_items_while_the_others_take_the_rest():
    """Item 0 is held until every other item is done. With a fixed share per thread its
    thread would also own items 1..3, which could not run until item 0 returned: item 0 would
    wait out its timeout. Taken in turn, the other thread runs items 1..7 and item 0 is
    released."""
    rest_done, count, lock = threading.Event(), [0], threading.Lock()

    def work(item):
        if item == 0:
            return rest_done.wait(timeout=10), threading.get_ident()
        with lock:
            count[0] += 1
            if count[0] == 7:
                rest_done.set()
        return True, threading.get_ident()

    results = on_threads(work, list(range(8)), 2)
    assert results[0][0], "item 0's thread held the other items back"
    assert all(worker != results[0][1] for _, worker in results[1:])


def test_an_error_stops_the_threads_taking_items_and_is_raised():
    ran = []

    def work(item):
        if item == 1:
            raise ValueError("item 1 is bad")
        threading.Event().wait(0.01)
        ran.append(item)
        return item

    with pytest.raises(ValueError, match="item 1 is bad"):
        on_threads(work, list(range(200)), 2)
    assert len(ran) < 100


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
def test_the_kernels_chunks_cover_the_rows_once_in_order(monkeypatch, threads):
    X = np.zeros((50_000, 10))
    share_out(monkeypatch, X, 3, 8)
    used, chunks = loss._kernel_chunks(X, threads, 3, buffers=True)
    assert used == threads
    assert len(chunks) == (1 if threads == 1 else threads * CHUNKS_PER_THREAD)
    assert chunks[0][0] == 0 and chunks[-1][1] == 50_000
    assert all(a[1] == b[0] for a, b in zip(chunks[:-1], chunks[1:], strict=True))
    assert max(b - a for a, b in chunks) - min(b - a for a, b in chunks) <= 1


def test_work_too_small_to_repay_a_thread_runs_on_one():
    """On 2 threads against one (``bench/bench_sizes.py``, rows of 50 features): a sigmoid's
    8,192 rows took 2.0-2.3 times as long (shared out from 2,048 rows a thread, whatever their
    work), 16,384 rows 1.01-1.05 times, 32,768 rows 0.79-0.80 times; ten classes' 4,096 rows
    0.89-1.12 times, 8,192 rows 0.81-0.96 times. A second thread is taken from twice
    ``loss.KERNEL_THREAD_WORK`` (a sigmoid's 51,000 rows, ten classes' 5,100), erring towards
    fewer; A's and B's rows (``bench/bench.py``) have work for 16 threads."""
    for rows, n_outputs in ((8192, 1), (32_768, 1), (4096, 10)):
        assert loss._kernel_chunks(np.zeros((rows, 50)), 8, n_outputs, True) == \
            (1, [(0, rows)])
    for rows, n_outputs in ((65_536, 1), (8192, 10)):
        assert loss._kernel_chunks(np.zeros((rows, 50)), 8, n_outputs, True)[0] >= 2
    assert loss._kernel_chunks(np.zeros((1_000_000, 50)), 16, 1, True)[0] == 16
    assert loss._kernel_chunks(np.zeros((200_000, 100)), 16, 10, True)[0] == 16


@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_sums_share_out_the_rows_by_their_work(monkeypatch, layout):
    """Five classes of 20,000 rows (dense with 20 features; CSR with about 10 stored of 200)
    are work for two threads (``loss.work_of``): asked for 3, the kernels use 2, four chunks
    each, and give the numpy reference's numbers at 1e-12; on one thread, one chunk."""
    rng = np.random.default_rng(11)
    n, d = (20_000, 20) if layout == "dense" else (20_000, 200)
    X = rng.normal(size=(n, d))
    if layout == "csr":
        X[rng.random(X.shape) < 0.95] = 0.0
        X = sp.csr_matrix(X)
    target, link = labels_target(rng.integers(0, 5, n), 5), get_link("softmax", 5)
    params = rng.normal(size=(d + 1, 5))
    monkeypatch.setenv("XENT_KERNELS", "0")
    reference = sums(params, X, target, link, n_threads=1)
    monkeypatch.setenv("XENT_KERNELS", "1")
    calls, run_sums = [], kernels.run_sums

    def counted(given, X, softmax, start, stop, with_grad, *out):
        calls.append((start, stop))
        return run_sums(given, X, softmax, start, stop, with_grad, *out)

    monkeypatch.setattr(kernels, "run_sums", counted)
    for threads, chunks in ((3, 8), (1, 1)):
        calls.clear()
        ours = sums(params, X, target, link, n_threads=threads)
        assert sorted(calls) == [(n * c // chunks, n * (c + 1) // chunks) for c in range(chunks)]
        assert ours.loss == pytest.approx(reference.loss, rel=1e-12)
        np.testing.assert_allclose(ours.grad_coef_t, reference.grad_coef_t, rtol=1e-12,
                                   atol=1e-12 * np.abs(reference.grad_coef_t).max())
        assert ours.n_correct == reference.n_correct


def test_the_numpy_sums_use_threads_only_where_the_work_repays_them(monkeypatch):
    asked = []

    def counted(work, items, threads):
        asked.append(threads)
        return on_threads(work, items, threads)

    monkeypatch.setattr(loss, "on_threads", counted)
    monkeypatch.setenv("XENT_KERNELS", "0")
    rng = np.random.default_rng(0)
    link = get_link("softmax", 3)
    for n in (20_000, 200_000):  # 1.2 and 12 times KERNEL_THREAD_WORK
        X = rng.normal(size=(n, 10))
        sums(np.zeros((11, 3)), X, labels_target(rng.integers(0, 3, n), 3), link, n_threads=4)
    assert asked == [1, 4]


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_the_gram_product_in_blocks_on_threads_equals_the_formula(monkeypatch, fit_intercept):
    """Xa^T D Xa v (the Lipschitz bound's product) a block of rows at a time, the runs of
    blocks on 1 and 3 threads, against the product of whole matrices at 1e-12; the same bytes
    whenever the thread count is the same; CSR (whole, one thread) too."""
    rng = np.random.default_rng(8)
    n, d = 10_000, 12
    X, v, weights = rng.normal(size=(n, d)), rng.normal(size=d + 1), rng.random(n) + 0.5
    Xa = np.c_[X, np.ones(n) if fit_intercept else np.zeros(n)]
    exact = Xa.T @ (weights * (Xa @ v))
    exact[d] = exact[d] if fit_intercept else 0.0
    share_out(monkeypatch, X, 1, 3)  # work for three threads
    monkeypatch.setattr(loss, "GRAM_BLOCK_BYTES", 100 * d * 8)  # 100 blocks of 100 rows
    runs = []

    def counted(work, items, threads):
        runs.append((threads, sum(len(item) for item in items)))
        return on_threads(work, items, threads)

    monkeypatch.setattr(loss, "on_threads", counted)
    for threads in (1, 3, 3):
        product, total = loss.gram_product(X, v, fit_intercept, weights, n_threads=threads)
        np.testing.assert_allclose(product, exact, rtol=1e-12, atol=1e-12 * np.abs(exact).max())
        assert total == pytest.approx(weights.sum(), rel=1e-14)
    assert runs == [(1, 100), (3, 100), (3, 100)]
    again, _ = loss.gram_product(X, v, fit_intercept, weights, n_threads=3)
    assert np.array_equal(again, product)
    sparse = sp.csr_matrix(np.where(rng.random(X.shape) < 0.7, 0.0, X))
    Xa_sparse = np.c_[sparse.toarray(), Xa[:, d]]
    product, _ = loss.gram_product(sparse, v, fit_intercept, weights, n_threads=3)
    reference = Xa_sparse.T @ (weights * (Xa_sparse @ v))
    reference[d] = reference[d] if fit_intercept else 0.0
    np.testing.assert_allclose(product, reference, rtol=1e-12,
                               atol=1e-12 * np.abs(reference).max())


def test_the_chunks_gradient_buffers_fit_in_their_memory(monkeypatch):
    X = np.zeros((50_000, 99))
    share_out(monkeypatch, X, 4, 8)
    buffer = 8 * 4 * 100  # a chunk's gradient: (99 + 1) x 4 float64
    monkeypatch.setattr(loss, "KERNEL_BUFFER_BYTES", 5 * buffer)
    used, chunks = loss._kernel_chunks(X, 2, 4, buffers=True)
    assert used == 2 and len(chunks) == 5  # not 8
    monkeypatch.setattr(loss, "KERNEL_BUFFER_BYTES", buffer)  # room for one: one thread
    assert loss._kernel_chunks(X, 2, 4, buffers=True) == (1, [(0, 50_000)])
    # with no gradient there are no buffers to fit
    assert len(loss._kernel_chunks(X, 2, 4, buffers=False)[1]) == 2 * CHUNKS_PER_THREAD


def test_sums_over_chunks_taken_in_turn_equal_the_numpy_reference(monkeypatch):
    """The kernels' sums over 4 chunks a thread, whichever thread took which (a held-up
    thread, simulated by delaying every other chunk), equal numpy's at 1e-12 and are the same
    bytes every time."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(12_000, 7))
    target, link = labels_target(rng.integers(0, 3, 12_000), 3), get_link("softmax", 3)
    params = rng.normal(size=(8, 3))
    monkeypatch.setenv("XENT_KERNELS", "0")
    reference = sums(params, X, target, link, n_threads=1)
    monkeypatch.setenv("XENT_KERNELS", "1")
    run_sums = kernels.run_sums

    def uneven(given, X, softmax, start, stop, with_grad, *out):
        if (start // 1000) % 2:
            threading.Event().wait(0.005)
        return run_sums(given, X, softmax, start, stop, with_grad, *out)

    monkeypatch.setattr(kernels, "run_sums", uneven)
    share_out(monkeypatch, X, 3, 3)
    runs = [sums(params, X, target, link, n_threads=3) for _ in range(3)]
    assert loss._kernel_chunks(X, 3, 3, buffers=True)[1][1] == (1000, 2000)  # 12 chunks
    for made in runs:
        assert made.loss == pytest.approx(reference.loss, rel=1e-12)
        np.testing.assert_allclose(made.grad_coef_t, reference.grad_coef_t, rtol=1e-12,
                                   atol=1e-12 * np.abs(reference.grad_coef_t).max())
        assert made.n_correct == reference.n_correct
        assert made.loss == runs[0].loss
        assert np.array_equal(made.grad_coef_t, runs[0].grad_coef_t)
        assert np.array_equal(made.grad_intercept, runs[0].grad_intercept)


def test_ctrl_c_stops_the_threads_taking_items():
    """Ctrl-C reaches the main thread, which takes items too: it is raised there at once (in
    the item it holds), and the pool's thread takes no more."""
    import _thread

    started, ran, main = threading.Event(), [], threading.main_thread()
    assert threading.current_thread() is main

    def work(item):
        if threading.current_thread() is not main and not started.is_set():
            started.set()
            _thread.interrupt_main()  # as a SIGINT would
        threading.Event().wait(0.01)
        ran.append(item)

    with pytest.raises(KeyboardInterrupt):
        on_threads(work, list(range(200)), 2)
    threading.Event().wait(0.2)  # the pool's thread finishes the item it holds, then stops
    settled = len(ran)
    threading.Event().wait(0.2)
    assert settled == len(ran) < 20


def test_the_calling_thread_takes_items_too():
    """One thread fewer to wake: on 3 threads, the caller and two of the pool's (the first
    three items wait for each other, so three threads hold them at once)."""
    takers, lock = set(), threading.Lock()
    first_three = threading.Barrier(3, timeout=10)

    def work(item):
        with lock:
            takers.add(threading.current_thread())
        if item < 3:
            first_three.wait()
        return item

    assert on_threads(work, list(range(60)), 3) == list(range(60))
    assert threading.current_thread() in takers and len(takers) == 3


def test_work_that_shares_out_work_of_its_own_runs_it_on_its_own_thread(monkeypatch):
    """An item whose work calls ``on_threads`` again (sums inside a sum): handed to the pool,
    the inner items would wait for the pool's threads, all busy waiting on them."""
    from xent import threads

    monkeypatch.setattr(threads, "_POOL", None)
    thread_pool(2)  # a pool of two: both busy with the outer items
    done = []

    def inner(item):
        return item + 1

    def outer(item):
        return sum(on_threads(inner, list(range(item, item + 4)), 2))

    caller = threading.Thread(target=lambda: done.append(on_threads(outer, [0, 10, 20], 2)),
                              daemon=True)
    caller.start()
    caller.join(timeout=20)
    assert done == [[10, 50, 90]]
