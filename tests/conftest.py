import numpy as np
import pytest
from sklearn import datasets
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from xent.links import get_link
from xent.loss import evaluate, labels_target

LOADERS = {
    "iris": datasets.load_iris,
    "wine": datasets.load_wine,
    "breast_cancer": datasets.load_breast_cancer,
    "digits": datasets.load_digits,
}


def standardised(name):
    X, y = LOADERS[name](return_X_y=True)
    return StandardScaler().fit_transform(X), y


def sklearn_optimum(X, y, l2):
    """scikit-learn LogisticRegression's optimum of the same objective: C = 1 / (l2 n).
    Returns (its parameters stacked as xent's (d + 1, k), its objective value in xent's
    terms)."""
    n_classes = len(np.unique(y))
    clf = LogisticRegression(C=1.0 / (l2 * len(y)), tol=1e-12, max_iter=100_000).fit(X, y)
    params = np.vstack([clf.coef_.T, clf.intercept_[None, :]])
    link = get_link("auto", n_classes)
    value = evaluate(params, X, labels_target(y, n_classes), link, l2).objective
    return params, value


@pytest.fixture(scope="session", autouse=True)
def shared_machine_code(tmp_path_factory):
    """One numba cache for the session's processes (pytest-xdist's workers and the commands
    they start), so a kernel is compiled once rather than once in each worker: under the
    directory the workers' own temporary directories share. Set before any kernel is loaded
    (``kernels`` only sets its default where none is given)."""
    import os

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    os.environ.setdefault("NUMBA_CACHE_DIR", str(shared / "numba-cache"))


@pytest.fixture(autouse=True)
def no_compile_notes(monkeypatch):
    """Whether a test's run compiles a kernel (and the command line notes it on stderr)
    depends on which test ran first, the workers sharing one numba cache: the kernels' notes
    go to a logger of their own here, which shows none. A subprocess with a cache of its own
    tests them (test_kernels)."""
    import logging

    from xent import kernels

    monkeypatch.setattr(kernels, "_LOG", logging.getLogger("tests.compile_notes"))


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Streamed data are cached under a directory of the test session, never ~/.cache."""
    monkeypatch.setenv("XENT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "xent-cache"))


@pytest.fixture(scope="session")
def optimum_cache():
    return {}


@pytest.fixture()
def run(tmp_path, monkeypatch):
    """Invoke the xent command line in a fresh working directory (tmp_path); stdout and stderr
    are kept apart, as a shell keeps them."""
    from click.testing import CliRunner

    from xent.cli import cli

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    return lambda *args: runner.invoke(cli, [str(a) for a in args], catch_exceptions=False)


def fit_arrays(X, target, link, *, l2=0.0, l1=0.0, weights=None, fit_intercept=True,
               optimizer="gd",
               lr="auto", max_epochs=5000, batch_size=None, tol=1e-6, patience=None, seed=0,
               lr_backoff=False, validation=None, callback=None, should_stop=None,
               checkpoint=None, checkpoint_every=0, resume=None, init_params=None):
    """``train.fit`` on arrays, its settings as keywords (the tests' shorthand)."""
    from xent.loss import Objective
    from xent.sources import ArraySource, RowSource
    from xent.train import Hooks, Solver, Stopping, fit

    if validation is not None and not isinstance(validation, RowSource):
        validation = ArraySource(*validation)
    return fit(ArraySource(X, target, weights), Objective(link, l2, fit_intercept, l1),
               Solver(optimizer, lr, batch_size, seed, lr_backoff),
               Stopping(max_epochs, tol, patience), validation=validation,
               hooks=Hooks(callback, should_stop, checkpoint, checkpoint_every), resume=resume,
               init_params=init_params)


def share_out(monkeypatch, X, n_outputs: int, threads: int) -> None:
    """Set ``loss.KERNEL_THREAD_WORK`` so that X's rows, with ``n_outputs`` outputs, are work
    enough for ``threads`` threads (``loss.work_of``): small data shared out as a large one
    would be."""
    from xent import loss

    monkeypatch.setattr(loss, "KERNEL_THREAD_WORK", loss.work_of(X, n_outputs) / (threads + 0.5))
