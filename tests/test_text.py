"""Text classification: hashed n-grams (against scikit-learn's HashingVectorizer), the lazy
sparse steps (against the dense steps and a plain numpy SparseAdam), the one gradient
X^T(Q - P) on a sparse batch, and text through the command line and the model file."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression

from xent import api
from xent.config import Config, with_overrides
from xent.links import get_link
from xent.loss import Objective
from xent.model import Model
from xent.optim import make_optimizer
from xent.targets import labels_target, proba_target
from xent.text import TextSpec, hash_fasttext, topic_corpus
from xent.train import BatchStep

DOCUMENTS = [
    "Hello, World! a_b c d__e  9x", "", "x", "The U.S.A. -- well...", "tab\there\nnewline",
    "naïve café ÜBER straße", "日本語 テキスト ab", "__label__x y", "a bb ccc dddd eeeee fffff",
    "Numbers 123 4567 and_underscores mixed42Case",
]


def fasttext_reference(path):
    """(texts, labels) of a fastText file as its format defines them, read here on its own
    (not by xent): each non-blank line's first ``__label__`` word is its label, its other
    words its text."""
    texts, labels = [], []
    for line in path.read_text(encoding="utf-8-sig").splitlines():
        words = line.split()
        if words:
            labels.append(next(w for w in words if w.startswith("__label__"))[9:])
            texts.append(" ".join(w for w in words if not w.startswith("__label__")))
    return texts, labels


@pytest.mark.parametrize("ngrams", [(1, 1), (1, 3), (2, 2)])
@pytest.mark.parametrize("norm", ["none", "l2"])
def test_hashing_equals_scikit_learns_hashing_vectorizer(ngrams, norm):
    """ASCII documents take the compiled path (in two slices, on two threads), others
    HashingVectorizer itself; every row must be HashingVectorizer's, in order."""
    rng = np.random.default_rng(0)
    documents = [DOCUMENTS[i] for i in rng.integers(0, len(DOCUMENTS), 2500)]
    spec = TextSpec(("t",), ngrams, 1 << 10, norm)
    reference = HashingVectorizer(n_features=1 << 10, ngram_range=ngrams, alternate_sign=False,
                                  norm=None if norm == "none" else "l2").transform(documents)
    ours = spec.hash_documents(documents, jobs=2)
    assert ours.shape == reference.shape
    assert abs(ours - reference).max() < 1e-15


def _problem(link, n=240, d=40, seed=0):
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=0.1, format="csr", random_state=seed) * 3.0
    k = 4 if link == "softmax" else 2
    y = rng.integers(0, k, n)
    params = rng.normal(size=(d + 1, get_link(link, k).n_outputs(k))) * 0.1
    return X, y, k, params, rng


def _steps(name, X, target, weights, params, objective, lr, order, batch_size):
    opt = make_optimizer(name, full_batch=False)
    step = BatchStep(name, opt, objective)
    state = opt.init(params, lr)
    return step.rows(params, state, X, target, weights, order, batch_size)


@pytest.mark.parametrize("link, fit_intercept, batch_size, soft",
                         [("softmax", True, 7, False), ("sigmoid", True, 7, False),
                          ("softmax", False, 7, False), ("sigmoid", False, 50, False),
                          ("softmax", True, 7, True), ("sigmoid", True, 50, True)])
def test_lazy_sgd_is_the_dense_step(link, fit_intercept, batch_size, soft):
    """W held as scale * V with the L2 shrinkage in the scale: the weights of the dense
    mini-batch SGD, with weights, label smoothing (or soft targets) and l2, to 1e-10. A batch
    of 50 is more than a block of the kernels (32 rows), and sorted."""
    X, y, k, params, rng = _problem(link)
    objective = Objective(get_link(link, k), l2=0.05, fit_intercept=fit_intercept)
    target = proba_target(rng.dirichlet(np.ones(k), len(y))) if soft else \
        labels_target(y, k, 0.1)
    weights = rng.random(len(y)) + 0.5
    order = rng.permutation(len(y))
    lazy, _, n_lazy = _steps("gd", X, target, weights, params, objective, 0.3, order,
                             batch_size)
    dense, _, n_dense = _steps("gd", X.toarray(), target, weights, params, objective, 0.3,
                               order, batch_size)
    assert n_lazy == n_dense == -(-len(y) // batch_size)
    assert np.abs(lazy - dense).max() < 1e-10
    assert np.abs(lazy - params).max() > 0.01  # it did move


def test_lazy_adagrad_without_l2_is_the_dense_step():
    """A coordinate without gradient keeps its sum of squares and does not move."""
    X, y, k, params, rng = _problem("softmax", seed=1)
    objective = Objective(get_link("softmax", k))
    order = rng.permutation(len(y))
    lazy, state, _ = _steps("adagrad", X, labels_target(y, k), None, params, objective, 0.2,
                            order, 5)
    dense, dense_state, _ = _steps("adagrad", X.toarray(), labels_target(y, k), None, params,
                                   objective, 0.2, order, 5)
    assert np.abs(lazy - dense).max() < 1e-10
    assert np.abs(state.sum_sq - dense_state.sum_sq).max() < 1e-10


def _softmax_grad(X, y, k, params):
    """X^T (Q - P) / n and mean(Q - P) in plain numpy (X dense)."""
    z = X @ params[:-1] + params[-1]
    q = np.exp(z - z.max(axis=1, keepdims=True))
    q /= q.sum(axis=1, keepdims=True)
    residual = q - np.eye(k)[y]
    return np.vstack([X.T @ residual, residual.sum(axis=0)]) / len(y)


def test_lazy_adam_is_sparse_adam():
    """Lazy Adam against a plain numpy SparseAdam: per batch, the moments of the rows of W
    whose features occur in the batch (and of the bias) move; the bias correction counts
    every step."""
    X, y, k, params, rng = _problem("softmax", seed=2)
    objective = Objective(get_link("softmax", k))
    order = rng.permutation(len(y))
    lazy, state, _ = _steps("adam", X, labels_target(y, k), None, params, objective, 0.05,
                            order, 6)
    dense = X.toarray()
    p, m, v = params.copy(), np.zeros_like(params), np.zeros_like(params)
    for count, start in enumerate(range(0, len(y), 6), start=1):
        rows = np.sort(order[start:start + 6])
        g = _softmax_grad(dense[rows], y[rows], k, p)
        touched = np.append(np.abs(dense[rows]).sum(axis=0) > 0, True)  # the bias row too
        m[touched] = 0.9 * m[touched] + 0.1 * g[touched]
        v[touched] = 0.999 * v[touched] + 0.001 * g[touched] ** 2
        step = 0.05 * (m / (1 - 0.9**count)) / (np.sqrt(v / (1 - 0.999**count)) + 1e-8)
        p[touched] -= step[touched]
    assert np.abs(lazy - p).max() < 1e-10
    assert state.count == -(-len(y) // 6)


def test_lazy_adagrad_with_l2_weights_and_a_fixed_bias():
    """AdaGrad's lazy steps with L2, row weights and b fixed, against the rule written out in
    numpy over every row of W: g = X_B^T (w (Q - P)) / sum(w), A += g^2,
    W <- (1 - lr l2) W - lr g / (sqrt(A) + 1e-10); a row without features in the batch has
    g = 0, so it only shrinks, which is what the lazy kernel does by its scale."""
    X, y, k, params, rng = _problem("softmax", seed=4)
    objective = Objective(get_link("softmax", k), l2=0.3, fit_intercept=False)
    weights = rng.random(len(y)) + 0.5
    order = rng.permutation(len(y))
    lr = 0.2
    lazy, state, _ = _steps("adagrad", X, labels_target(y, k), weights, params, objective, lr,
                            order, 5)
    dense = X.toarray()
    W, b, A = params[:-1].copy(), params[-1].copy(), np.zeros_like(params[:-1])
    for start in range(0, len(y), 5):
        rows = np.sort(order[start:start + 5])
        z = dense[rows] @ W + b
        q = np.exp(z - z.max(axis=1, keepdims=True))
        q /= q.sum(axis=1, keepdims=True)
        residual = weights[rows, None] * (q - np.eye(k)[y[rows]])
        g = dense[rows].T @ residual / weights[rows].sum()
        A += g ** 2
        W = (1 - lr * objective.l2) * W - lr * g / (np.sqrt(A) + 1e-10)
    assert np.abs(lazy[:-1] - W).max() < 1e-10
    assert np.array_equal(lazy[-1], params[-1])  # b fixed
    assert np.abs(state.sum_sq[:-1] - A).max() < 1e-10
    assert np.abs(lazy[:-1] - params[:-1]).max() > 0.01  # it did move


def test_a_sparse_batch_steps_on_x_transpose_q_minus_p():
    """The same engine: one lazy SGD step over a sparse batch moves the parameters by lr times
    the hand-written X^T (Q - P) / n (and mean(Q - P) for the bias)."""
    X, y, k, params, _ = _problem("softmax", n=30, seed=3)
    objective = Objective(get_link("softmax", k))
    stepped, _, n_steps = _steps("gd", X, labels_target(y, k), None, params, objective, 1.0,
                                 np.arange(len(y)), len(y))
    assert n_steps == 1
    assert np.abs((params - stepped) - _softmax_grad(X.toarray(), y, k, params)).max() < 1e-12


@pytest.fixture(scope="module")
def corpus():
    documents, labels = topic_corpus(3000, vocab=3000, n_classes=5, seed=1)
    names = np.array(["sports", "tech", "food", "travel", "music"], dtype=object)[labels]
    return documents, names


def _frame(documents, labels, rng):
    return pd.DataFrame({"review": documents, "stars": rng.integers(1, 6, len(documents)),
                         "shop": rng.choice(["north", "south"], len(documents)),
                         "topic": labels})


def test_text_defaults_reach_saga_on_a_topic_corpus(corpus):
    """xent's text defaults (lazy SGD, 5 epochs) against scikit-learn saga's 5 epochs on the
    same hashed counts: the held-out accuracy within a point of saga's."""
    documents, labels = corpus
    spec = TextSpec(("review",), buckets=1 << 14)
    frame = pd.DataFrame({"review": documents, "topic": labels})
    train, test = frame.iloc[:2400], frame.iloc[2400:]
    config = with_overrides(Config(), {"data.source": "unused.csv", "data.text": "review",
                                       "data.buckets": 1 << 14, "data.val_fraction": 0.0})
    config = api.with_implied_defaults(config, set())
    assert config.optim.optimizer == "gd" and config.optim.batch_size == 1
    from xent.data import frame_table
    from xent.sources import MemoryTable

    table = MemoryTable.of(frame_table(train, "corpus", "topic", text=spec))
    run = api.train(config, table=table)
    ours = np.mean(run.model.predict(test) == test["topic"].to_numpy())
    X_train, X_test = spec.transform(train), spec.transform(test)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saga = LogisticRegression(solver="saga", max_iter=5, C=1e4).fit(X_train, train["topic"])
    theirs = np.mean(saga.predict(X_test) == test["topic"].to_numpy())
    assert theirs > 0.8
    assert ours >= theirs - 0.01


def test_text_columns_through_the_command_line(run, tmp_path, corpus):
    """A CSV with a text, a numeric and a categorical column: trained with the text defaults,
    evaluated and predicted from raw text (words never seen included), the model file small
    in its header and the same predictions from Python."""
    documents, labels = corpus
    rng = np.random.default_rng(0)
    frame = _frame(documents[:600], labels[:600], rng)
    frame.to_csv(tmp_path / "reviews.csv", index=False)
    result = run("train", "reviews.csv", "--text", "review", "--target", "topic",
                 "--buckets", "4096", "--ngrams", "1-2", "-o", "runs/r", "-q")
    assert result.exit_code == 0, result.output
    config = (tmp_path / "runs/r/config.toml").read_text()
    assert 'optimizer = "gd"' in config and "batch_size = 1" in config
    new = _frame(["w1 w2 neverseen-word zzz " + d for d in documents[600:700]],
                 labels[600:700], rng).drop(columns="topic")
    new.to_csv(tmp_path / "new.csv", index=False)
    result = run("predict", "runs/r", "new.csv", "--proba")
    assert result.exit_code == 0, result.output
    predicted = pd.read_csv(pd.io.common.StringIO(result.stdout))
    assert len(predicted) == 100
    model = Model.load(tmp_path / "runs/r/model.npz")
    assert model.n_features == 1 + 2 + 4096  # stars, shop=north/south, the buckets
    assert list(predicted["prediction"]) == list(model.predict(new))
    probabilities = predicted.filter(like="proba_").to_numpy()
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    with np.load(tmp_path / "runs/r/model.npz", allow_pickle=False) as archive:
        header = json.loads(str(archive["header"]))
    assert header["feature_names"] == ["stars", "shop=north", "shop=south"]
    assert header["encoder"]["text"] == {"columns": ["review"], "ngrams": [1, 2],
                                         "buckets": 4096, "norm": "none", "tfidf": False}
    result = run("eval", "runs/r", "reviews.csv", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["accuracy"] > 0.9


def test_fasttext_files(run, tmp_path):
    (tmp_path / "train.txt").write_text(
        "__label__spam buy cheap pills now\n\n__label__ham lunch at noon?\n"
        "__label__spam __label__promo win a prize now\n__label__ham see you at the meeting\n"
        * 20, encoding="utf-8")
    labels, X, several = hash_fasttext(tmp_path / "train.txt", TextSpec(("text",), (1, 1), 256))
    assert len(labels) == 80 and labels[:4] == ["spam", "ham", "spam", "ham"]
    assert several == 20  # the third line of each four: spam and promo
    # the third line's text is "win a prize now" (its label words go): tokens win, prize, now
    assert X[2].nnz == 3
    result = run("train", "train.txt", "-o", "runs/ft", "-q", "--buckets", "256",
                 "--epochs", "20", "--val-fraction", "0")
    assert result.exit_code == 0, result.output
    result = run("eval", "runs/ft", "train.txt", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["accuracy"] == 1.0
    for stream in ([], ["--stream"]):  # the first label of each line is kept, and said so
        dry = run("train", "train.txt", "--dry-run", *stream)
        notes = json.loads(dry.stdout[dry.stdout.index("{"):])["notes"]
        assert any("lines with several labels: 20 of 80; xent trains one class a row and "
                   "keeps each line's first" in n for n in notes), notes
    (tmp_path / "bad.txt").write_text("__label__a one\nno label here\n", encoding="utf-8")
    result = run("train", "bad.txt", "-o", "runs/bad")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].endswith(
        "line(s) [2] have no __label__NAME label; label them or remove them")


def test_fasttext_hashed_in_blocks_equals_the_whole_file_hashed(tmp_path):
    """Training reads a fastText file a block of lines at a time and stacks the blocks' CSR;
    rows, labels and counts must be HashingVectorizer's on the whole file's texts, whatever
    the block size (a BOM, blank lines, non-ASCII documents and a file without an ending
    newline included)."""
    rng = np.random.default_rng(1)
    picks = rng.integers(0, len(DOCUMENTS), 300)
    lines = [f"__label__c{i % 3} {DOCUMENTS[i]}".replace("\n", " ") for i in picks]
    lines[5] = ""
    (tmp_path / "f.txt").write_text("\ufeff" + "\n".join(lines), encoding="utf-8")
    texts, reference_labels = fasttext_reference(tmp_path / "f.txt")
    reference = HashingVectorizer(n_features=512, ngram_range=(1, 2), alternate_sign=False,
                                  norm=None).transform(texts)
    spec = TextSpec(("text",), (1, 2), 512)
    for block_rows in (1, 7, 1000):
        labels, X, several = hash_fasttext(tmp_path / "f.txt", spec, jobs=2,
                                           block_rows=block_rows)
        assert labels == reference_labels and len(labels) == 299
        assert several == sum(sum(w.startswith("__label__") for w in line.split()) > 1
                              for line in lines)  # a document holds the word __label__x
        assert X.shape == reference.shape and abs(X - reference).max() == 0


def test_fasttext_evaluated_in_blocks_equals_the_whole_file(run, tmp_path, monkeypatch):
    """``eval`` and ``predict`` read a fastText file a block of lines at a time, as training
    does: X must be HashingVectorizer's on the whole file's texts and the labels the file's,
    whatever the block size; a label the model never saw is still a one-line error."""
    from xent import data

    rng = np.random.default_rng(2)
    lines = [f"__label__c{i % 3} {DOCUMENTS[i]}".replace("\n", " ")
             for i in rng.integers(0, len(DOCUMENTS), 200)]
    (tmp_path / "f.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run("train", "f.txt", "-o", "runs/f", "-q", "--buckets", "512", "--ngrams", "1-2",
                 "--epochs", "2", "--val-fraction", "0")
    assert result.exit_code == 0, result.output
    model = api.load_model(tmp_path / "runs/f")
    texts, labels = fasttext_reference(tmp_path / "f.txt")
    reference = HashingVectorizer(n_features=512, ngram_range=(1, 2), alternate_sign=False,
                                  norm=None).transform(texts)
    predictions = []
    for block_lines in (7, 10**6):
        monkeypatch.setattr(data, "FASTTEXT_BLOCK_LINES", block_lines)
        dataset = api.load_for_model(tmp_path / "f.txt", model, require_labels=True)
        assert dataset.X.shape == reference.shape and abs(dataset.X - reference).max() == 0
        assert [model.classes[i] for i in dataset.labels] == labels
        result = run("predict", "runs/f", "f.txt", "--proba")
        assert result.exit_code == 0, result.output
        predictions.append(result.stdout)
    assert predictions[0] == predictions[1] and predictions[0].count("\n") == 201
    (tmp_path / "new.txt").write_text("__label__c0 x\n" * 10 + "__label__c9 y\n",
                                      encoding="utf-8")
    result = run("eval", "runs/f", "new.txt")
    assert result.exit_code == 1 and "c9" in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("args, code, message", [
    (["--engine", "dask"], 2, "text columns are hashed in memory or streamed (--stream)"),
    (["--ngrams", "3-1"], 2, "data.ngrams (--ngrams) must be N or N-M"),
    (["--text", "nope"], 1, "no text column(s) 'nope'"),
    (["--text", "topic"], 1, "cannot be both a text column and the target"),
])
def test_text_mistakes_are_one_line_errors(run, tmp_path, args, code, message):
    pd.DataFrame({"review": ["good one", "bad one"] * 5, "topic": ["a", "b"] * 5}).to_csv(
        tmp_path / "small.csv", index=False)
    options = ["--text", "review"] if "--text" not in args else []
    result = run("train", "small.csv", "--target", "topic", *options, *args, "-o", "runs/x")
    assert result.exit_code == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "runs/x").exists()


def test_streamed_text_trains_the_in_memory_model(run, tmp_path, corpus, monkeypatch):
    """--stream hashes each chunk into the cache once; full-batch training on it gives the
    in-memory model (blocks of 64 rows, text beside numeric and categorical columns, a
    validation split), and lazy SGD runs block by block; a fastText file streams too. The
    sums go the way hashed text takes on a large corpus: the compiled kernels, by columns on
    3 threads, the streamed blocks added into one gradient."""
    from xent import kernels, loss

    monkeypatch.setenv("XENT_CACHE_DIR", str(tmp_path / "cache"))  # its caches go with it
    documents, labels = corpus
    frame = _frame(documents[:500], labels[:500], np.random.default_rng(1))
    frame.to_csv(tmp_path / "reviews.csv", index=False)
    common = ["--text", "review", "--target", "topic", "--buckets", "2048", "-q",
              "--optimizer", "lbfgs", "--batch-size", "0", "--epochs", "30", "--l2", "1e-3"]
    added_in = []
    by_columns = kernels.csr_by_columns

    def spied(*args, out=None):
        added_in.append(out is not None)
        return by_columns(*args, out=out)

    with monkeypatch.context() as kernel_path:
        kernel_path.setenv("XENT_KERNELS", "1")
        kernel_path.setenv("XENT_THREADS", "3")
        # a thread's work a few rows: by columns on 3 threads even in the blocks of 64 rows
        kernel_path.setattr(loss, "KERNEL_THREAD_WORK", 1000)
        kernel_path.setattr(kernels, "csr_by_columns", spied)
        assert run("train", "reviews.csv", *common, "-o", "runs/memory").exit_code == 0
        result = run("train", "reviews.csv", *common, "--stream", "--chunk-rows", "64",
                     "-o", "runs/stream")
    assert result.exit_code == 0, result.output
    assert True in added_in and False in added_in  # whole matrices, and blocks added in
    memory = Model.load(tmp_path / "runs/memory/model.npz")
    streamed = Model.load(tmp_path / "runs/stream/model.npz")
    assert np.abs(memory.params - streamed.params).max() < 1e-8
    result = run("train", "reviews.csv", "--text", "review", "--target", "topic", "--stream",
                 "--chunk-rows", "64", "--buckets", "2048", "-o", "runs/sgd", "--json", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["val_accuracy"] > 0.8
    with open(tmp_path / "docs.txt", "w", encoding="utf-8") as handle:
        for document, label in zip(documents[:300], labels[:300], strict=True):
            handle.write(f"__label__{label} {document}\n")
    result = run("train", "docs.txt", "--stream", "--chunk-rows", "64", "--buckets", "2048",
                 "-o", "runs/ft", "--json", "-q")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_samples"] == 300


def test_a_resumed_text_run_is_the_run_never_stopped_and_export_refuses_text(run, tmp_path,
                                                                              corpus):
    """Lazy SGD keeps the dense optimiser's state, so --resume gives the byte-identical model;
    ONNX has no hashing operator, so exporting a text model is a one-line error."""
    documents, labels = corpus
    _frame(documents[:300], labels[:300], np.random.default_rng(2)).to_csv(
        tmp_path / "reviews.csv", index=False)
    common = ["reviews.csv", "--text", "review", "--target", "topic", "--buckets", "1024", "-q"]
    assert run("train", *common, "--epochs", "2", "-o", "runs/two").exit_code == 0
    assert run("train", "--resume", "runs/two", "--epochs", "4", "-q").exit_code == 0
    assert run("train", *common, "--epochs", "4", "-o", "runs/four").exit_code == 0
    assert (tmp_path / "runs/two/model.npz").read_bytes() == \
        (tmp_path / "runs/four/model.npz").read_bytes()
    result = run("export", "runs/four", "-o", "model.onnx")
    assert result.exit_code == 1 and not (tmp_path / "model.onnx").exists()
    assert "ONNX has no operator" in result.stderr.strip().splitlines()[-1]


def test_tfidf_is_scikit_learns_tfidf_with_idf_from_the_training_rows(run, tmp_path, corpus):
    """--tfidf: counts times log((1 + n) / (1 + df)) + 1 over the training rows, kept as the
    model's feature scale. The L-BFGS optimum equals scikit-learn's LogisticRegression on
    TfidfTransformer(norm=None)'s matrix of the same hashed counts, and predictions on new
    text use the same idf."""
    from sklearn.feature_extraction.text import TfidfTransformer

    documents, labels = corpus
    frame = pd.DataFrame({"review": documents[:500], "topic": labels[:500]})
    frame.to_csv(tmp_path / "reviews.csv", index=False)
    result = run("train", "reviews.csv", "--text", "review", "--target", "topic", "--tfidf",
                 "--buckets", "512", "--optimizer", "lbfgs", "--batch-size", "0", "--epochs",
                 "500", "--tol", "1e-10", "--l2", "1e-3", "--val-fraction", "0", "-q", "--json",
                 "-o", "runs/t")
    assert result.exit_code == 0, result.output
    ours = json.loads(result.stdout)["objective"]
    counts = TextSpec(("review",), buckets=512).transform(frame)
    X = TfidfTransformer(norm=None).fit_transform(counts)
    clf = LogisticRegression(C=1.0 / (1e-3 * len(frame)), tol=1e-12, max_iter=10_000)
    clf.fit(X, frame["topic"])
    proba = clf.predict_proba(X)
    y = np.searchsorted(clf.classes_, frame["topic"])
    theirs = -np.mean(np.log(proba[np.arange(len(y)), y])) + 0.5e-3 * np.sum(clf.coef_ ** 2)
    assert ours == pytest.approx(theirs, rel=1e-6)
    new = pd.DataFrame({"review": documents[500:600]})
    model = Model.load(tmp_path / "runs/t/model.npz")
    X_new = TfidfTransformer(norm=None).fit(counts).transform(
        TextSpec(("review",), buckets=512).transform(new))
    assert np.abs(model.predict_proba(new) - clf.predict_proba(X_new)).max() < 1e-4
    result = run("train", "reviews.csv", "--text", "review", "--target", "topic", "--tfidf",
                 "--text-norm", "l2", "-o", "runs/x")
    assert result.exit_code == 2 and "use --tfidf with --text-norm none" in result.stderr


def test_a_sweep_over_text_gets_the_text_defaults_it_does_not_vary(run, tmp_path, corpus):
    documents, labels = corpus
    pd.DataFrame({"review": documents[:200], "topic": labels[:200]}).to_csv(
        tmp_path / "reviews.csv", index=False)
    (tmp_path / "sweep.toml").write_text(
        '[data]\nsource = "reviews.csv"\ntarget = "topic"\ntext = "review"\nbuckets = 256\n'
        '[optim]\nepochs = 2\n[sweep]\n"model.l2" = [1e-6, 1e-4]\n', encoding="utf-8")
    result = run("sweep", "sweep.toml", "-o", "sw")
    assert result.exit_code == 0, result.output
    for point, l2 in (("000-l2=1e-06", "1e-06"), ("001-l2=0.0001", "0.0001")):
        config = (tmp_path / "sw" / point / "config.toml").read_text()
        assert 'optimizer = "gd"' in config and "batch_size = 1" in config  # implied
        assert "epochs = 2 " in config and f"l2 = {l2} " in config  # the file's, the sweep's


def test_feature_names_of_hashed_text_are_the_listed_names_made_on_demand():
    """``FeatureNames``: the tabular names, then ``column#bucket`` for every bucket of every
    text column, as the list written out would be (lengths, indices, slices, equality)."""
    from xent.text import FeatureNames

    names = FeatureNames(["age", "city=Oslo"], ("title", "body"), 5)
    listed = ["age", "city=Oslo"] + [f"{c}#{b}" for c in ("title", "body") for b in range(5)]
    assert len(names) == len(listed) == 12
    assert list(names) == listed and names == listed
    assert [names[i] for i in (0, 2, 6, 7, 11, -1, -12)] == \
        [listed[i] for i in (0, 2, 6, 7, 11, -1, -12)]
    assert names[3:9:2] == listed[3:9:2]
    assert names == FeatureNames(["age", "city=Oslo"], ("title", "body"), 5)
    assert names != FeatureNames(["age"], ("title", "body"), 5)
    with pytest.raises(IndexError):
        names[12]


def test_document_frequencies_counted_in_blocks_equal_one_count(monkeypatch):
    """The selected rows where each hashed column occurs, counted a block of entries at a time
    (``preprocess.document_frequency``), equal one count over the selected rows' matrix."""
    from xent import preprocess

    rng = np.random.default_rng(3)
    X = sp.random(500, 40, density=0.1, format="csr", random_state=rng)
    selection = rng.random(500) < 0.7
    expected = np.asarray((X[selection] != 0).sum(axis=0)).ravel()
    monkeypatch.setattr(preprocess, "DF_BLOCK_ENTRIES", 37)
    assert np.array_equal(preprocess.document_frequency(X, selection), expected)
