"""The compiled kernels (#14) against the numpy reference (``loss._accumulate``): every link,
target, weighting, dtype and layout, at 1e-12 in float64; the same bytes for the same thread
count; the thread settings (--threads, n_jobs, $XENT_THREADS); and where the machine code is
cached."""

import json
import os
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import share_out

from xent import kernels
from xent.links import get_link
from xent.loss import (
    Objective,
    finish,
    labels_target,
    summed_as_params,
    sums,
    use_kernels,
)
from xent.processes import core_slots
from xent.targets import proba_target
from xent.threads import thread_count, use_threads


def _both(monkeypatch, *args, **kwargs):
    """(numpy reference, compiled kernels) sums of the same arguments."""
    results = []
    for forced in ("0", "1"):
        monkeypatch.setenv("XENT_KERNELS", forced)
        results.append(sums(*args, **kwargs))
    return results


def _close(reference, ours, rtol):
    scale = max(np.abs(reference.grad_coef_t).max(), 1e-300)
    assert abs(ours.loss - reference.loss) <= rtol * abs(reference.loss)
    assert np.abs(ours.grad_coef_t - reference.grad_coef_t).max() <= rtol * scale
    assert np.allclose(ours.grad_intercept, reference.grad_intercept, rtol=rtol,
                       atol=rtol * scale)
    assert ours.n_correct == reference.n_correct


@pytest.mark.parametrize("n_classes", [2, 4, 7, 10])  # 7 and 10: every tile of the products
@pytest.mark.parametrize("layout", ["dense", "csr"])
@pytest.mark.parametrize("target_kind", ["hard", "smoothed", "soft"])
@pytest.mark.parametrize("weighted", [False, True])
def test_kernels_equal_the_numpy_reference(monkeypatch, n_classes, layout, target_kind,
                                           weighted):
    rng = np.random.default_rng(n_classes)
    n, d = 2500, 9
    X = rng.normal(size=(n, d))
    if layout == "csr":
        X[rng.random(X.shape) < 0.7] = 0.0
        X = sp.csr_matrix(X)
    y = rng.integers(0, n_classes, n)
    if target_kind == "soft":
        P = rng.random((n, n_classes))
        target = proba_target(P / P.sum(axis=1, keepdims=True))
    else:
        target = labels_target(y, n_classes, 0.1 if target_kind == "smoothed" else 0.0)
    link = get_link("auto", n_classes)
    weights = rng.random(n) if weighted else None
    params = rng.normal(size=(d + 1, link.n_outputs(n_classes))) * 3
    reference, ours = _both(monkeypatch, params, X, target, link, weights, n_threads=3)
    _close(reference, ours, 1e-12)


@pytest.mark.parametrize("n_classes, threads", [(2, 1), (5, 1), (5, 3)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rows_read_from_memory_equal_the_numpy_reference(monkeypatch, n_classes, threads,
                                                         dtype):
    """The rows of a dense X larger than ``_compiled.PREFETCH_MIN_BYTES`` are asked for ahead
    of use, in every chunk of them (on 3 threads, 12 chunks, each asking into the next): the
    same numbers at 1e-12, the last rows (with nothing ahead) included."""
    from xent import _compiled

    rng = np.random.default_rng(n_classes)
    d = 12
    n = _compiled.PREFETCH_MIN_BYTES // (d * np.dtype(dtype).itemsize) + 1003
    X = rng.normal(size=(n, d)).astype(dtype)
    target = labels_target(rng.integers(0, n_classes, n), n_classes, 0.0)
    link = get_link("auto", n_classes)
    params = rng.normal(size=(d + 1, link.n_outputs(n_classes)))
    share_out(monkeypatch, X, params.shape[1], threads)
    reference, ours = _both(monkeypatch, params, X, target, link, None, n_threads=threads,
                            compute_dtype=np.float64)
    _close(reference, ours, 1e-12)


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("target_kind, weighted, dtype", [
    ("smoothed", False, np.float64), ("soft", True, np.float32)])
def test_wide_csr_summed_by_columns_equals_the_numpy_reference(monkeypatch, n_classes,
                                                                target_kind, weighted, dtype):
    """CSR with more features than rows per thread (hashed text) is summed in two passes,
    R by rows, then X^T R by ranges of columns (``kernels.csr_by_columns``): the numpy
    reference's numbers at 1e-12, the same bytes every time."""
    from xent.loss import _by_columns

    rng = np.random.default_rng(n_classes)
    n, d = 6000, 4000
    per_row = 16
    X = sp.csr_matrix((rng.uniform(0, 3, n * per_row).astype(dtype),
                       rng.integers(0, d, n * per_row), np.arange(0, n * per_row + 1, per_row)),
                      shape=(n, d))
    if target_kind == "soft":
        P = rng.random((n, n_classes))
        target = proba_target(P / P.sum(axis=1, keepdims=True))
    else:
        target = labels_target(rng.integers(0, n_classes, n), n_classes, 0.1)
    link = get_link("auto", n_classes)
    weights = rng.random(n) if weighted else None
    params = rng.normal(size=(d + 1, link.n_outputs(n_classes)))
    share_out(monkeypatch, X, params.shape[1], 3)
    assert _by_columns(X, 3, params.shape[1], True)  # 3 x 4000 features > 6000 rows
    assert not _by_columns(X, 1, params.shape[1], True)
    reference, ours = _both(monkeypatch, params, X, target, link, weights, n_threads=3,
                            compute_dtype=np.float64)
    _close(reference, ours, 1e-12)
    again = sums(params, X, target, link, weights, n_threads=3, compute_dtype=np.float64)
    assert again.loss == ours.loss and np.array_equal(again.grad_coef_t, ours.grad_coef_t)
    # in blocks of 800 rows (R of one block at a time; the last block shorter): each gradient
    # entry still adds its rows in order, so the gradient is the same bytes
    monkeypatch.setattr(kernels, "RESIDUAL_BLOCK_BYTES", 800 * 8 * params.shape[1])
    assert kernels.residual_block_rows(n, params.shape[1], 3) == 800
    blocked = sums(params, X, target, link, weights, n_threads=3, compute_dtype=np.float64)
    _close(reference, blocked, 1e-12)
    assert np.array_equal(blocked.grad_coef_t, ours.grad_coef_t)
    # the sums are the rows of one array, which ``finish`` makes the gradient where it is
    assert summed_as_params(blocked, params.shape) is not None
    assert summed_as_params(blocked._replace(grad_coef_t=blocked.grad_coef_t.copy()),
                            params.shape) is None
    # a source's blocks summed one after another into one gradient, each by columns
    halves = (slice(0, 3500), slice(3500, n))
    share_out(monkeypatch, X, params.shape[1], 8)  # each half by columns on 3 threads too
    assert _by_columns(X[halves[0]], 3, params.shape[1], True)
    assert _by_columns(X[halves[1]], 3, params.shape[1], True)
    totals = None
    for rows in halves:
        totals = sums(params, X[rows], target.take(np.arange(n)[rows]), link,
                      None if weights is None else weights[rows], n_threads=3,
                      compute_dtype=np.float64, into=totals)
    _close(reference, totals, 1e-12)
    assert summed_as_params(totals, params.shape) is not None
    objective = Objective(link, l2=0.01)
    expected = finish(params, reference, objective)
    made = finish(params, blocked, objective)
    assert made.objective == pytest.approx(expected.objective, rel=1e-12)
    np.testing.assert_allclose(made.grad, expected.grad, rtol=1e-12,
                               atol=1e-12 * np.abs(expected.grad).max())


@pytest.mark.parametrize("n", [1, 2, 3])
def test_a_few_rows_of_much_work_take_no_more_threads_than_rows(monkeypatch, n):
    """A few rows of hashed text can be work for many threads (``loss.work_of``); each thread
    needs a row of its own. Asked for 4 threads, 1-3 rows give the numpy reference's numbers
    at 1e-12 (by columns where there are two rows or more; before, fewer rows than threads
    failed there with an IndexError)."""
    from xent import loss

    rng = np.random.default_rng(n)
    d, per_row = 5000, 1500
    columns = np.concatenate([np.sort(rng.choice(d, per_row, replace=False)) for _ in range(n)])
    X = sp.csr_matrix((rng.uniform(0, 2, n * per_row), columns,
                       np.arange(0, n * per_row + 1, per_row)), shape=(n, d))
    target, link = labels_target(np.arange(n) % 3, 3), get_link("softmax", 3)
    params = rng.normal(scale=0.1, size=(d + 1, 3))
    monkeypatch.setattr(loss, "KERNEL_THREAD_WORK", 1000)  # work for hundreds of threads
    assert loss._kernel_chunks(X, 4, 3, buffers=True)[0] == n
    assert loss._by_columns(X, 4, 3, True) == (n > 1)
    reference, ours = _both(monkeypatch, params, X, target, link, None, n_threads=4)
    _close(reference, ours, 1e-12)


@pytest.mark.parametrize("n_classes", [2, 6])
def test_wide_csr_with_its_rows_columns_in_order_or_not_by_many_ranges(monkeypatch, n_classes):
    """By columns, a range finds a row's entries by a binary search where the row's columns
    are in order (``_compiled.csr_columns``' ``sorted_rows``: scipy's, the hashing's), and reads
    every entry where they are not: the same matrix stored both ways, cut into 8 ranges of
    columns, gives the numpy reference's numbers at 1e-12 both ways."""
    from xent import loss

    rng = np.random.default_rng(n_classes)
    n, d, per_row = 6000, 3000, 12
    X = sp.csr_matrix((rng.uniform(0, 3, n * per_row), rng.integers(0, d, n * per_row),
                       np.arange(0, n * per_row + 1, per_row)), shape=(n, d))
    X.sum_duplicates()  # in order, one entry a column
    backwards = X.copy()  # each row's entries reversed: the same matrix, columns out of order
    for i in range(n):
        row = slice(X.indptr[i], X.indptr[i + 1])
        backwards.indices[row], backwards.data[row] = X.indices[row][::-1], X.data[row][::-1]
    backwards = sp.csr_matrix((backwards.data, backwards.indices, backwards.indptr),
                              shape=(n, d))
    assert X.has_sorted_indices and not backwards.has_sorted_indices
    target = labels_target(rng.integers(0, n_classes, n), n_classes)
    link = get_link("auto", n_classes)
    params = rng.normal(size=(d + 1, link.n_outputs(n_classes)))
    share_out(monkeypatch, X, params.shape[1], 8)
    assert loss._by_columns(X, 8, params.shape[1], True)
    for stored in (X, backwards):
        reference, ours = _both(monkeypatch, params, stored, target, link, None, n_threads=8)
        _close(reference, ours, 1e-12)


@pytest.mark.parametrize("layout", ["dense", "csr"])
@pytest.mark.parametrize("forced", ["0", "1"])
def test_sums_added_into_earlier_sums_equal_one_pass(monkeypatch, layout, forced):
    """A source's blocks summed one after another into one gradient (``sums(into=...)``, the
    kernel adding in place) give the sums of all the rows in one pass, at 1e-12."""
    monkeypatch.setenv("XENT_KERNELS", forced)
    rng = np.random.default_rng(7)
    X = rng.normal(size=(3000, 9))
    if layout == "csr":
        X[rng.random(X.shape) < 0.6] = 0.0
        X = sp.csr_matrix(X)
    target = labels_target(rng.integers(0, 4, 3000), 4, 0.1)
    link, weights = get_link("softmax", 4), rng.random(3000)
    params = rng.normal(size=(10, 4))
    whole = sums(params, X, target, link, weights, n_threads=1)
    totals = None
    for rows in (slice(0, 1000), slice(1000, 2200), slice(2200, 3000)):
        totals = sums(params, X[rows], target.take(np.arange(3000)[rows]), link,
                      weights[rows], n_threads=1, into=totals)
    _close(whole, totals, 1e-12)
    assert totals.n_rows == 3000 and totals.weight == pytest.approx(weights.sum(), rel=1e-14)


@pytest.mark.parametrize("layout", ["dense", "csr"])
def test_float32_data_in_float64_and_float32_products(monkeypatch, layout):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 6)).astype(np.float32)
    if layout == "csr":
        X[rng.random(X.shape) < 0.5] = 0.0
        X = sp.csr_matrix(X)
    link, target = get_link("softmax"), labels_target(rng.integers(0, 3, 3000), 3)
    params = rng.normal(size=(7, 3))
    reference, ours = _both(monkeypatch, params, X, target, link, compute_dtype=np.float64)
    _close(reference, ours, 1e-12)  # float32 data, exact float64 products: the same sums
    reference, ours = _both(monkeypatch, params, X, target, link)
    _close(reference, ours, 1e-5)  # float32 products (the kernels sum them in float64)


def test_ties_and_extreme_logits(monkeypatch):
    """Zero weights tie every class: the first one is predicted, as Model.predict does.
    Logits of +-1e4 give exact, finite losses (log-sum-exp), equal to the reference's."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 3))
    for n_classes in (2, 3):
        link = get_link("auto", n_classes)
        target = labels_target(rng.integers(0, n_classes, 400), n_classes)
        tied = np.zeros((4, link.n_outputs(n_classes)))
        reference, ours = _both(monkeypatch, tied, X, target, link)
        assert ours.n_correct == reference.n_correct == np.count_nonzero(target.labels == 0)
        huge = rng.normal(size=(4, link.n_outputs(n_classes))) * 1e4
        reference, ours = _both(monkeypatch, huge, X, target, link)
        assert np.isfinite(ours.loss) and np.all(np.isfinite(ours.grad_coef_t))
        _close(reference, ours, 1e-12)


def _compiled_loop(function):
    """``function`` applied to each value of an array, in a loop compiled with the kernels'
    options: where it vectorises, and where reassociation could undo a careful order."""
    import numba

    compiled = kernels.kernels()

    @numba.njit(**{**compiled._OPTIONS, "cache": False})  # a closure: nothing to cache
    def each(x):
        out = np.empty_like(x)
        for j in range(x.shape[0]):
            out[j] = function(x[j])
        return out

    return each


def _ulps(ours, reference):
    return np.abs(ours - reference) / np.spacing(np.maximum(np.abs(reference), 5e-324))


def test_the_exp_of_a_shifted_logit_is_within_one_ulp():
    """``_compiled.exp_of`` (a polynomial instead of a call, for the links' exps) is numpy's
    exp within 1 ulp over x <= 0, subnormal results included; 0 for -inf, NaN for NaN."""
    x = np.concatenate([np.random.default_rng(0).uniform(-745.5, 0.0, 200_000),
                        -np.geomspace(1e-300, 745.0, 5000),
                        [0.0, -0.0, -5e-324, -709.0, -744.44, -745.13, -745.2, -746.5]])
    exps = _compiled_loop(kernels.kernels().exp_of)
    assert _ulps(exps(x), np.exp(x)).max() <= 1.0
    edges = exps(np.array([-np.inf, np.nan, -1e308]))
    assert edges[0] == 0.0 and np.isnan(edges[1]) and edges[2] == 0.0


def test_the_sigmoids_log1p_is_within_one_ulp():
    """``_compiled.log1p_of`` (the sigmoid's log(1 + e^-|z|), a series instead of a call) is
    numpy's log1p within 1 ulp over e in [0, 1], through subnormal e, e below 2^-53 (where
    1 + e is 1) and both sides of sqrt(2) - 1, where it changes its reduction."""
    root = np.sqrt(2.0) - 1.0
    e = np.concatenate([np.random.default_rng(1).uniform(0.0, 1.0, 200_000),
                        np.geomspace(1e-300, 1.0, 20_000),
                        [0.0, 5e-324, 2.0 ** -60, 2.0 ** -53, 1.0, np.nextafter(root, 0.0), root,
                         np.nextafter(root, 1.0)]])
    logs = _compiled_loop(kernels.kernels().log1p_of)
    assert _ulps(logs(e), np.log1p(e)).max() <= 1.0
    assert np.isnan(logs(np.array([np.nan]))[0])


def test_the_same_thread_count_gives_the_same_bytes(monkeypatch):
    monkeypatch.setenv("XENT_KERNELS", "1")
    rng = np.random.default_rng(2)
    X = rng.normal(size=(20_000, 12))
    link, target = get_link("softmax"), labels_target(rng.integers(0, 5, 20_000), 5)
    params = rng.normal(size=(13, 5))
    share_out(monkeypatch, X, 5, 4)  # work for 4 threads, 16 chunks
    runs = {t: [sums(params, X, target, link, n_threads=t) for _ in range(3)] for t in (1, 2, 4)}
    for parts in runs.values():
        assert all(p.loss == parts[0].loss and np.array_equal(p.grad_coef_t, parts[0].grad_coef_t)
                   for p in parts)
    assert runs[4][0].loss == pytest.approx(runs[1][0].loss, rel=1e-13)
    assert np.allclose(runs[4][0].grad_coef_t, runs[1][0].grad_coef_t, rtol=1e-12, atol=1e-12)


def test_which_data_the_kernels_take(monkeypatch):
    monkeypatch.delenv("XENT_KERNELS", raising=False)
    big = np.zeros((20_000, 10))
    assert use_kernels(big) and not use_kernels(np.zeros((100, 10)))
    assert not use_kernels(np.asfortranarray(big))  # not C-ordered: the reference reads it
    assert not use_kernels(big.astype(np.int64))
    assert use_kernels(sp.csr_matrix(np.eye(400)) * 1.0) is False  # too few stored values
    monkeypatch.setenv("XENT_KERNELS", "1")
    assert use_kernels(np.zeros((100, 10)))
    monkeypatch.setenv("XENT_KERNELS", "0")
    assert not use_kernels(big)


def test_thread_settings(monkeypatch):
    from xent.threads import available_cores

    cores = available_cores()
    monkeypatch.delenv("XENT_THREADS", raising=False)
    assert thread_count() == cores
    monkeypatch.setenv("XENT_THREADS", "1")
    assert thread_count() == 1
    with use_threads(cores + 5):
        assert thread_count() == cores  # never more than the cores this process may use
    monkeypatch.setenv("XENT_THREADS", "many")
    with pytest.raises(Exception, match="XENT_THREADS='many'"):
        thread_count()


@pytest.mark.parametrize("files, cpus", [
    ({"cpu.max": "200000 100000\n"}, 2),
    ({"cpu.max": "150000 100000\n"}, 2),  # 1.5 CPUs' time: two threads, rounded up
    ({"cpu.max": "50000 100000\n"}, 1),
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),
])
def test_a_containers_cpu_quota_caps_the_threads(tmp_path, monkeypatch, files, cpus):
    """A container given 2 CPUs of a 64-core host sees all 64 cores in its affinity: its
    control group's CFS quota (cgroup v2 or v1) is what it may use, and the threads follow it."""
    from xent import threads

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert threads.cgroup_cpu_limit(str(tmp_path)) == cpus
    monkeypatch.setattr(threads, "CGROUP_ROOT", str(tmp_path))
    monkeypatch.delenv("XENT_THREADS", raising=False)
    cores = len(os.sched_getaffinity(0))
    assert threads.available_cores() == (min(cores, cpus) if cpus else cores)
    assert thread_count() == threads.available_cores()
    # a sweep's processes share the quota's cores, not the host's
    slots = core_slots(2)
    assert len(set().union(*slots)) == threads.available_cores()


def test_threads_on_the_command_line_and_the_estimator(run, monkeypatch):
    from xent import SoftmaxRegression

    monkeypatch.setenv("XENT_KERNELS", "1")
    runs = [json.loads(run("train", "sklearn:wine", "--optimizer", "lbfgs", "--threads", t,
                           "--json", "-q", "-o", f"t{t}").stdout) for t in ("1", "2")]
    assert runs[0]["objective"] == pytest.approx(runs[1]["objective"], rel=1e-12)
    refused = run("train", "sklearn:wine", "--threads", "-1", "-q", "-o", "bad")
    assert refused.exit_code == 2 and "optim.threads must be >= 0" in refused.stderr
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(300, 4)), rng.integers(0, 3, 300)
    one, every = (SoftmaxRegression(optimizer="lbfgs", n_jobs=n).fit(X, y) for n in (1, -1))
    assert np.allclose(one.coef_, every.coef_, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("numba_first", [False, True])
def test_the_machine_code_is_cached_in_xents_cache_not_beside_the_package(tmp_path,
                                                                         numba_first):
    """numba writes its cache beside a module unless told otherwise, which fails where xent is
    installed read-only. A copy of the package with no numba settings in the environment:
    the first process compiles into <xent's cache>/numba and writes nothing in the package's
    folder; a second process loads the kernel from there instead of compiling it. Also when
    numba was imported before xent's kernels (by the user's code, or another library), so that
    its settings were read before xent could give its cache directory."""
    import shutil
    import subprocess
    from pathlib import Path

    import xent

    site = tmp_path / "site"
    shutil.copytree(Path(xent.__file__).parent, site / "xent",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "PYTHON"))}
    env.update(PYTHONPATH=str(site), XENT_CACHE_DIR=str(tmp_path / "cache"))
    script = (("import numba\n" if numba_first else "") +
              "import numpy as np, xent\n"
              "from xent import kernels\n"
              f"assert xent.__file__.startswith({str(site)!r})\n"
              "compiled = kernels.kernels()\n"
              "print(compiled.murmur3_32(np.frombuffer(b'hello', np.uint8), 0, 5),\n"
              "      sum(compiled.murmur3_32.stats.cache_hits.values()))")

    def loads():
        done = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    # murmur3's 32-bit hash of b"hello" with seed 0 (its reference value)
    assert loads() == ["613153351", "0"]
    assert loads() == ["613153351", "1"]
    assert list((tmp_path / "cache" / "numba").rglob("*.nbi"))
    assert not [p for p in (site / "xent").rglob("*") if p.suffix in (".nbi", ".nbc")]


_HASH_TWO_DOCUMENTS = """
from xent.text import TextSpec
counts = TextSpec(("text",), buckets=64).hash_documents(["good food", "bad food food"])
print(counts.toarray().sum(axis=1).tolist())
"""


def test_a_damaged_file_of_the_machine_code_cache_is_compiled_anew(tmp_path):
    """numba cannot read back a file of its disk cache cut short (a crash at the wrong moment),
    and every later run failed with its traceback (`xent cache clear` keeps the kernels). The
    cache's files of xent's kernels are removed and the kernel compiled anew, in the same run:
    the same counts, and the cache written whole again. (A cut-short index fails and mends
    the same way, by numba's pickle, as a cut-short data file.)"""
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["XENT_CACHE_DIR"] = str(tmp_path / "cache")

    def counts():
        done = subprocess.run([sys.executable, "-c", _HASH_TWO_DOCUMENTS], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    expected = "[2.0, 3.0]"  # unigrams: good, food / bad, food, food
    assert counts() == expected
    files = list((tmp_path / "cache" / "numba").rglob("_compiled.hash_ascii*.nbc"))
    assert files
    for path in files:
        path.write_bytes(path.read_bytes()[:40])  # cut short
    assert counts() == expected
    assert all(path.stat().st_size > 40 for path in files)  # written whole again


_HASH_UNDER_A_FILE_SIZE_LIMIT = """
import resource
import signal

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails, as on a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
""" + _HASH_TWO_DOCUMENTS


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE as on Linux")
def test_machine_code_that_cannot_be_saved_still_runs(tmp_path):
    """Where numba cannot write its disk cache (a full disk; here a file size limit), the
    kernels were compiled but the run failed with numba's OSError. Now it goes on, the kernels
    compiled in memory, with one warning that says where they could not be saved."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["XENT_CACHE_DIR"] = str(tmp_path / "cache")
    done = subprocess.run([sys.executable, "-c", _HASH_UNDER_A_FILE_SIZE_LIMIT], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[2.0, 3.0]"
    assert "the compiled kernels' cache in" in done.stderr and "could not be used" in done.stderr
    assert str(tmp_path / "cache" / "numba") in done.stderr


def test_the_command_line_shows_xents_warnings_in_one_line(capsys):
    import warnings

    from xent import cli, kernels

    with warnings.catch_warnings():
        warnings.showwarning = cli._show_warning
        warnings.warn_explicit("could not save", RuntimeWarning, kernels.__file__, 1)
    assert capsys.readouterr().err == "xent: warning: could not save\n"


def test_warming_the_cache_ahead_leaves_a_run_nothing_to_compile(tmp_path):
    """`xent cache warm` compiles kernels into the disk cache by running them as a run does,
    so that a later process loads them (numba's cache hits) and compiles none (its misses:
    one, without the warm-up). The hashing kernel, the quickest to compile. Then `xent cache
    clear --kernels` removes them."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["XENT_CACHE_DIR"] = str(tmp_path / "cache")
    warm = subprocess.run([sys.executable, "-c", "from xent.cli import main; main()",
                           "cache", "warm", "hashing", "--jobs", "1"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert warm.returncode == 0, warm.stderr
    assert warm.stdout.startswith("compiled 1 kernel(s) in ")
    assert str(tmp_path / "cache" / "numba" / "xent_") in warm.stdout
    assert "hashing: " in warm.stderr
    script = _HASH_TWO_DOCUMENTS + (
        "from xent.kernels import kernels\n"
        "stats = kernels().hash_ascii.stats\n"
        "print(sum(stats.cache_misses.values()), sum(stats.cache_hits.values()))\n")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[2.0, 3.0]", "0 1"]
    # `xent cache clear --kernels` finds numba's files where numba put them, and only those
    machine_code = list((tmp_path / "cache" / "numba").rglob("_compiled.*"))
    assert len(machine_code) >= 2  # hash_ascii's index and code, at least
    (tmp_path / "cache" / "numba" / "other_1a2b").mkdir()
    (tmp_path / "cache" / "numba" / "other_1a2b" / "module.f-1.py311.nbi").write_bytes(b"x")
    cleared = subprocess.run([sys.executable, "-c", "from xent.cli import main; main()",
                              "cache", "clear", "--kernels"], env=env, capture_output=True,
                             text=True, timeout=120)
    assert cleared.stdout.startswith(f"removed {len(machine_code)} compiled kernel file(s)")
    assert [p.name for p in (tmp_path / "cache" / "numba").rglob("*.nb*")] == \
        ["module.f-1.py311.nbi"]  # another library's cache stays


def test_a_cache_that_cannot_be_written_fails_the_warm_up_in_one_line(monkeypatch, run):
    """A run goes on where the kernels' cache cannot be written (compiling in memory); a
    warm-up would be for nothing, so it is an error that says where and what to do."""
    import warnings
    from pathlib import Path

    from xent import warmup
    from xent.errors import XentError
    from xent.kernels import CacheNotSaved

    monkeypatch.setenv("XENT_KERNELS", "0")  # run_job sets it for its process; put it back

    def full_disk(cases):
        assert cases == warmup.DTYPE_CASES["float64"] + warmup.DTYPE_CASES["float32"]
        warnings.warn(CacheNotSaved(Path("/x/numba"), "No space left on device"), stacklevel=1)

    with pytest.raises(XentError, match=r"^the compiled kernels' cache in /x/numba could not "
                       r"be written \(No space left on device\): set XENT_CACHE_DIR"):
        warmup.run_job(warmup.WarmJob("full", full_disk), ("float64", "float32"))
    refused = run("cache", "warm", "dense-sigmod")
    assert refused.exit_code == 2 and "'dense-sigmod' is not one of" in refused.stderr
    refused = run("cache", "clear", "--kernels", "--stale")
    assert refused.exit_code == 2 and "--kernels removes the compiled kernels only" in \
        refused.stderr


@pytest.mark.skipif(os.name != "posix", reason="SIGTERM as on POSIX")
def test_a_warm_up_stopped_by_a_signal_ends_in_one_line(tmp_path):
    """SIGTERM (or Ctrl-C) while the kernels compile: the processes end, one line says what
    is kept, the exit code is the signal's, no traceback."""
    import signal
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["XENT_CACHE_DIR"] = str(tmp_path / "cache")
    warm = subprocess.Popen([sys.executable, "-c", "from xent.cli import main; main()",
                             "cache", "warm", "dense-sigmoid"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert warm.stderr.readline().startswith("compiling 1 kernel(s)")  # the process started
    warm.send_signal(signal.SIGTERM)
    stdout, stderr = warm.communicate(timeout=60)
    assert warm.returncode == 128 + signal.SIGTERM
    assert stderr.startswith("xent: warm-up interrupted; the kernels listed above are kept in")
    assert "Traceback" not in stderr and stdout == ""


def test_a_run_that_compiles_kernels_says_so_once(tmp_path):
    """The first run that compiles a kernel pauses for seconds: one line says what it was and
    that later runs load it; a later run, which loads it, says nothing; -q says nothing.
    Hashing text (compiled whatever $XENT_KERNELS; L-BFGS, so no lazy steps) is the quickest
    compile."""
    import subprocess

    import pandas as pd

    pd.DataFrame({"review": ["good food", "bad food"] * 10, "label": ["a", "b"] * 10}).to_csv(
        tmp_path / "reviews.csv", index=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.update(XENT_CACHE_DIR=str(tmp_path / "cache"), XENT_KERNELS="0")

    def train(*options):
        done = subprocess.run([sys.executable, "-c", "from xent.cli import main; main()",
                               "train", "reviews.csv", "--text", "review", "--optimizer",
                               "lbfgs", "--epochs", "3",
                               "--force", "-o", "run", *options], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return [line for line in done.stderr.splitlines() if "compiled the kernels" in line]

    first = train()
    assert len(first) == 1 and first[0].startswith("xent: compiled ")
    assert str(tmp_path / "cache" / "numba") in first[0] and "xent cache warm" in first[0]
    assert train() == []
    (tmp_path / "cache").rename(tmp_path / "old-cache")  # compiling again, but quietly
    assert train("-q") == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc as on Linux")
def test_a_warm_up_says_where_numba_put_the_kernels(tmp_path):
    """Where xent's cache folder cannot be written, numba writes the machine code beside the
    package instead (when it can): the warm-up says so (it said the folder asked for), and
    `xent cache list` and `clear --kernels` find the files there. A copy of the package, so
    the checkout's own folder is not touched."""
    import shutil
    import subprocess
    from pathlib import Path

    import xent

    site = tmp_path / "site"
    shutil.copytree(Path(xent.__file__).parent, site / "xent",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "PYTHON"))}
    env.update(PYTHONPATH=str(site), XENT_CACHE_DIR="/proc/no-such-cache")  # never writable

    def xent_command(*args):
        done = subprocess.run([sys.executable, "-c", "from xent.cli import main; main()",
                               "cache", *args], env=env, cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    beside = site / "xent" / "__pycache__"
    assert xent_command("warm", "hashing").rstrip().endswith(f"into {beside}")
    files = list(beside.glob("_compiled.*.nb[ic]"))
    assert files
    assert xent_command("list").splitlines()[-1].startswith(f"compiled kernels: {len(files)} ")
    assert xent_command("clear", "--kernels").startswith(f"removed {len(files)} ")
    assert not list(beside.glob("_compiled.*.nb[ic]"))
