"""Hostile and unusual inputs (issue #19): each case failed the error contract once — a silent
wrong result, lost work, or a message that did not help. The reference for a prediction is
always a model trained and used on data read the right way."""

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xent.api import load_model
from xent.data import ReadOptions, delimiter

DATA = Path(__file__).resolve().parent.parent / "data"


def _libsvm(path, X, y, base, skip_first=False):
    with open(path, "w") as handle:
        for row, label in zip(X, y, strict=True):
            items = [f"{j + base}:{v:.17g}" for j, v in enumerate(row)
                     if not (skip_first and j == 0)]
            handle.write(" ".join([str(label)] + items) + "\n")


def _separable(n=300, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) + np.array([2.0] + [0.0] * (d - 1))
    y = (X @ rng.normal(size=d) > 0).astype(int)
    return X, y


# ---- silent wrong results ---------------------------------------------------------------

def test_the_libsvm_index_base_is_recorded_and_used_by_predict(run, tmp_path):
    X, y = _separable()
    _libsvm(tmp_path / "train.svm", X, y, base=0)
    # the same rows without any "0:" entry: by guess it would read as one-based
    _libsvm(tmp_path / "nozero.svm", X, y, base=0, skip_first=True)
    assert run("train", "train.svm", "-o", "r", "-q", "--optimizer", "lbfgs").exit_code == 0
    X_without_first = X.copy()
    X_without_first[:, 0] = 0.0
    reference = load_model(tmp_path / "r").predict_proba(X_without_first)[:, 1]
    got = run("predict", "r", "nozero.svm", "--proba")
    assert got.exit_code == 0
    assert np.allclose(pd.read_csv(io.StringIO(got.stdout))["proba_1"], reference, rtol=1e-9)
    shifted = run("predict", "r", "nozero.svm", "--proba", "--one-based")
    assert shifted.stdout != got.stdout  # the option is honoured
    # one-based training data stay one-based, and a 0 index in them is an error
    _libsvm(tmp_path / "one.svm", X, y, base=1)
    assert run("train", "one.svm", "-o", "o", "-q", "--optimizer", "lbfgs").exit_code == 0
    same = json.loads(run("eval", "o", "one.svm", "--json").stdout)["accuracy"]
    assert same == json.loads(run("eval", "r", "train.svm", "--json").stdout)["accuracy"]
    wrong = run("train", "train.svm", "--one-based", "-o", "w", "-q")
    assert wrong.exit_code == 1 and "--zero-based" in wrong.stderr


def test_predictions_line_up_with_input_rows_after_impute_drop(run, tmp_path):
    frame = pd.read_csv(DATA / "iris.csv")
    frame.loc[[3, 40], "sepal length (cm)"] = np.nan
    frame.to_csv(tmp_path / "holes.csv", index=False)
    trained = run("train", "holes.csv", "--impute", "drop", "-o", "r", "-q", "--optimizer",
                  "lbfgs")
    assert trained.exit_code == 0, trained.output
    predicted = run("predict", "r", "holes.csv", "--proba")
    assert predicted.exit_code == 0
    assert "2 of 150 rows" in predicted.stderr and "[5, 42]" in predicted.stderr
    table = pd.read_csv(io.StringIO(predicted.stdout))
    assert len(table) == 150
    assert table["prediction"].isna().tolist() == [i in (3, 40) for i in range(150)]
    whole = pd.read_csv(io.StringIO(run("predict", "r", DATA / "iris.csv",
                                                      "--proba").stdout))
    kept = [i for i in range(150) if i not in (3, 40)]
    assert table.iloc[kept].reset_index(drop=True).equals(whole.iloc[kept].reset_index(drop=True))
    report = json.loads(run("eval", "r", "holes.csv", "--json").stdout)
    assert report["n_samples"] == 148 and report["n_left_out"] == 2
    traced = run("trace", "r", "holes.csv", "--row", "3")
    assert traced.exit_code == 1 and "row 3 has missing values" in traced.stderr
    assert run("trace", "r", "holes.csv", "--row", "4", "--json").exit_code == 0


def _counted_blocks(monkeypatch) -> list[int]:
    """The rows of each block ``data.table_chunks`` reads from here on, as they are read."""
    from xent import data as data_mod

    chunks, read_chunks = [], data_mod.table_chunks

    def counted(*args, **kwargs):
        for chunk in read_chunks(*args, **kwargs):
            chunks.append(len(chunk))
            yield chunk

    monkeypatch.setattr(data_mod, "table_chunks", counted)
    return chunks


def test_predict_reads_a_large_file_a_block_at_a_time(run, tmp_path, monkeypatch):
    """predict held the whole CSV, and every output line, in memory (719-838 MB for a 170 MB
    file), and eval the whole CSV; they now read a block of rows at a time. Here blocks of 7
    rows: the output is that of the file read whole, rows left out (--impute drop) fall in
    several blocks and keep their file lines, and an error in a later block leaves no --out
    file."""
    from xent import api

    frame = pd.read_csv(DATA / "iris.csv")
    frame.loc[[3, 40, 41, 149], "sepal length (cm)"] = np.nan
    frame.to_csv(tmp_path / "holes.csv", index=False)
    assert run("train", "holes.csv", "--impute", "drop", "-o", "r", "-q").exit_code == 0
    whole = run("predict", "r", "holes.csv", "--proba")  # one block of 65,536 rows
    evaluated = run("eval", "r", "holes.csv", "--json")
    assert run("train", "sklearn:iris", "-o", "no_fill", "-q").exit_code == 0  # no --impute
    monkeypatch.setattr(api, "PREDICT_BLOCK_ROWS", 7)
    from xent import data as data_mod

    chunks = _counted_blocks(monkeypatch)  # in blocks, none of more than 7 rows
    monkeypatch.setattr(data_mod, "read_csv", None)  # and never whole
    blocks = run("predict", "r", "holes.csv", "--proba")
    assert blocks.exit_code == 0 and blocks.stdout == whole.stdout
    assert len(chunks) == 22 and max(chunks) == 7 and sum(chunks) == 150
    in_blocks = run("eval", "r", "holes.csv", "--json")  # eval keeps labels and probabilities
    assert in_blocks.stdout == evaluated.stdout and in_blocks.stderr == evaluated.stderr
    assert json.loads(in_blocks.stdout)["n_left_out"] == 4
    assert "4 of 150 rows" in blocks.stderr and "[5, 42, 43, 151]" in blocks.stderr
    table = pd.read_csv(io.StringIO(blocks.stdout))
    assert table["prediction"].isna().tolist() == [i in (3, 40, 41, 149) for i in range(150)]
    frame.iloc[:20].assign(**{"sepal length (cm)": np.nan}).to_csv(tmp_path / "none.csv",
                                                                    index=False)
    nothing = run("predict", "r", "none.csv")  # three blocks, no row the model can use
    assert nothing.exit_code == 1 and nothing.stdout == "" and "nothing to predict" in \
        nothing.stderr
    broken = frame.astype({"petal width (cm)": object})
    broken.loc[100, "petal width (cm)"] = "wide"  # text in a numeric column, block 15
    broken.to_csv(tmp_path / "broken.csv", index=False)
    failed = run("predict", "r", "broken.csv", "-o", "out.csv")
    assert failed.exit_code == 1 and failed.stderr.count("\n") == 1
    assert not (tmp_path / "out.csv").exists()
    # the line is the file's, counted across blocks (it had said only "holds text here")
    assert "column 'petal width (cm)' was numeric in training but holds text here ('wide' " \
           "on line 102)" in failed.stderr
    late = pd.read_csv(DATA / "iris.csv")
    late.loc[130, "sepal width (cm)"] = np.nan  # block 19 of 7 rows
    late.to_csv(tmp_path / "late.csv", index=False)
    unfilled = run("predict", "no_fill", "late.csv")
    assert unfilled.exit_code == 1 and "missing values in column(s) 'sepal width (cm)' (1) " \
        "(lines [132])" in unfilled.stderr, unfilled.stderr


def test_trace_reads_a_file_only_up_to_its_row(run, tmp_path, monkeypatch):
    """trace read the whole CSV to show one row; it now reads blocks up to the one that holds
    the row, and shows what the file read whole shows. Rows are counted across blocks, for
    the range and for rows the model cannot encode."""
    from xent import api
    from xent import data as data_mod

    frame = pd.read_csv(DATA / "iris.csv")
    frame.loc[[3, 97], "sepal length (cm)"] = np.nan
    frame.to_csv(tmp_path / "holes.csv", index=False)
    assert run("train", "holes.csv", "--impute", "drop", "-o", "r", "-q").exit_code == 0
    whole = {row: run("trace", "r", "holes.csv", "--row", str(row), "--json").stdout
             for row in (0, 100, 149)}
    monkeypatch.setattr(api, "PREDICT_BLOCK_ROWS", 7)
    chunks = _counted_blocks(monkeypatch)
    monkeypatch.setattr(data_mod, "read_csv", None)
    for row, blocks_read in ((0, 1), (100, 15), (149, 22)):
        chunks.clear()
        traced = run("trace", "r", "holes.csv", "--row", str(row), "--json")
        assert traced.exit_code == 0 and traced.stdout == whole[row]
        assert json.loads(traced.stdout)["row"] == row and len(chunks) == blocks_read
    beyond = run("trace", "r", "holes.csv", "--row", "150")
    assert beyond.exit_code == 2 and "the data have rows 0 to 149" in beyond.stderr
    dropped = run("trace", "r", "holes.csv", "--row", "97")
    assert dropped.exit_code == 1 and "row 97 has missing values" in dropped.stderr


def test_levels_the_model_never_saw_are_noted(run, tmp_path, monkeypatch):
    """A level training never saw is encoded as no level (all its features 0), as
    scikit-learn's OneHotEncoder(handle_unknown="ignore") does: predict, eval and inspect
    used it with no word, so a file that writes 'Red' for 'red' was predicted from the other
    columns alone. The rows are counted across blocks."""
    from xent import api

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"c": rng.choice(["red", "blue"], 60), "x": rng.normal(size=60),
                          "y": rng.integers(0, 2, 60)})
    frame.to_csv(tmp_path / "train.csv", index=False)
    assert run("train", "train.csv", "-o", "r", "-q").exit_code == 0
    other = frame.copy()
    other.loc[[3, 20, 41], "c"] = ["Red", "green", "Red"]
    other.loc[50:, "c"] = "BLUE"  # 10 rows
    other.to_csv(tmp_path / "other.csv", index=False)
    monkeypatch.setattr(api, "PREDICT_BLOCK_ROWS", 7)
    expected = ("note: 13 of 60 rows of other.csv have a level of column 'c' the model never "
                "saw ('Red', 'green', 'BLUE'): it counts as no level")
    for command in (["predict", "r", "other.csv"], ["eval", "r", "other.csv"],
                    ["inspect", "r", "other.csv"]):
        used = run(*command)
        assert used.exit_code == 0 and expected in used.stderr, (command, used.stderr)
        assert "never saw" not in run(*command[:2], "train.csv").stderr
    evaluated = json.loads(run("eval", "r", "other.csv", "--json").stdout)
    assert evaluated["n_unseen_levels"] == {"c": 13}  # for scripts, beside n_left_out


def test_eval_inspect_and_trace_take_the_label_column_of_their_file(run, tmp_path):
    """A file whose label column has another name than the training file's could not be
    evaluated without editing it ("no target column 'species'"); --target names it."""
    text = (DATA / "iris.csv").read_text()
    (tmp_path / "iris.csv").write_text(text)
    (tmp_path / "kind.csv").write_text(text.replace("species", "kind", 1))
    assert run("train", "iris.csv", "-o", "r", "-q").exit_code == 0
    refused = run("eval", "r", "kind.csv")
    assert refused.exit_code == 1 and "no target column 'species'" in refused.stderr and \
        "name the label column with --target" in refused.stderr
    for command, extra in (("eval", ["--json"]), ("inspect", ["--json"]),
                           ("trace", ["--row", "60", "--json"])):
        renamed = run(command, "r", "kind.csv", "--target", "kind", *extra)
        assert renamed.exit_code == 0, renamed.stderr
        assert renamed.stdout == run(command, "r", "iris.csv", *extra).stdout


def test_predict_cuts_its_blocks_by_the_encoded_width(run, tmp_path, monkeypatch):
    """A column of many levels makes each row as many features wide: 65,536 rows of a
    3,000-level column were 1.6 GB encoded, and predict peaked at 3.3 GB on a 200,000-row file
    of three columns. Blocks are cut to about ``PREDICT_BLOCK_BYTES`` encoded: here 30 levels
    and a number, 31 features, and room for 10 rows a block."""
    from xent import api

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"zip": [f"z{i % 30}" for i in range(300)],
                          "x": rng.normal(size=300).round(4), "y": rng.integers(0, 2, 300)})
    frame.to_csv(tmp_path / "zips.csv", index=False)
    assert run("train", "zips.csv", "-o", "r", "-q", "--epochs", "20").exit_code == 0
    assert len(load_model(tmp_path / "r").feature_names) == 31
    whole = run("predict", "r", "zips.csv", "--proba").stdout
    chunks = _counted_blocks(monkeypatch)
    monkeypatch.setattr(api, "PREDICT_BLOCK_BYTES", 8 * 31 * 10)
    blocks = pd.read_csv(io.StringIO(run("predict", "r", "zips.csv", "--proba").stdout))
    assert chunks == [10] * 30
    reference = pd.read_csv(io.StringIO(whole))
    # the same classes; probabilities to the last digit or so: BLAS rounds a product of 10
    # rows and one of 300 differently (1 ulp here)
    assert blocks["prediction"].tolist() == reference["prediction"].tolist()
    np.testing.assert_allclose(blocks.to_numpy(float), reference.to_numpy(float), rtol=1e-12)


def _european(frame: pd.DataFrame, points_between_thousands=False) -> str:
    """``frame`` as a spreadsheet set to German or French writes it: ';' between fields, a
    decimal comma (and with ``points_between_thousands``, 1.234,5)."""
    def written(value):
        if not isinstance(value, float):
            return str(value)
        text = f"{value:,.6f}" if points_between_thousands else f"{value:.6f}"
        return text.replace(",", "_").replace(".", ",").replace("_", ".")
    lines = [";".join(frame.columns)]
    lines += [";".join(written(v) for v in row) for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("points", [False, True], ids=["decimal-comma", "german"])
def test_numbers_with_a_decimal_comma_are_noted_and_read_as_numbers(run, tmp_path, points):
    """A file with a decimal comma (0,126) was read as categories, and the note advised
    --thousands ',', which reads 0,126 as 126. The note now names --decimal ',' (with
    --thousands '.' for 1.234,5), and with it the file trains the model of the same numbers
    written with a point, in memory and streamed; the model reads later files the same way."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"amount": rng.normal(size=300) * (3000.0 if points else 1.0),
                          "rate": rng.normal(size=300)})
    frame["y"] = (frame["amount"] * (1 / 3000 if points else 1) + frame["rate"]
                  + rng.normal(size=300) > 0).astype(int)
    frame.round(6).to_csv(tmp_path / "point.csv", index=False)
    (tmp_path / "comma.csv").write_text(_european(frame.round(6), points))
    dry = run("train", "comma.csv", "--dry-run")
    notes = json.loads(dry.stdout[dry.stdout.index("{"):])["notes"]
    advice = {"amount": "--thousands '.' --decimal ','" if points else "--decimal ','",
              "rate": "--decimal ','"}  # rates below 1,000 have no point
    for column, words in advice.items():
        assert any(f"{column!r}" in n and f"pass {words} to read them" in n for n in notes), notes
    assert not any("--thousands ','" in n or "identifier" in n for n in notes), notes
    options = ["--thousands", "."] if points else []
    settings = ["--optimizer", "lbfgs", "--val-fraction", "0", "-q", "--json"]
    reference = json.loads(run("train", "point.csv", "-o", "p", *settings).stdout)
    for stream in ([], ["--stream"]):
        out = f"c{len(stream)}"
        trained = run("train", "comma.csv", "-o", out, "--decimal", ",", *options, *settings,
                      *stream)
        summary = json.loads(trained.stdout)
        assert summary["n_features"] == 2
        assert summary["train_loss"] == pytest.approx(reference["train_loss"], rel=1e-9)
        np.testing.assert_allclose(load_model(tmp_path / out).coef, load_model(tmp_path / "p").coef,
                                   rtol=1e-7, atol=1e-9)
    assert run("predict", "c0", "comma.csv", "--proba").stdout == \
        run("predict", "p", "point.csv", "--proba").stdout


def test_a_row_index_written_by_pandas_is_noted(run, tmp_path):
    """df.to_csv(path) writes the index as a first column with an empty header: trained as a
    feature with no word, its row numbers gave a validation accuracy of 1.0 on iris (sorted by
    class), however little the measurements said."""
    frame = pd.read_csv(DATA / "iris.csv")
    frame.to_csv(tmp_path / "indexed.csv")  # the index too, as pandas writes by default
    frame.to_csv(tmp_path / "plain.csv", index=False)
    for stream in ([], ["--stream"]):
        dry = run("train", "indexed.csv", "--dry-run", *stream)
        notes = json.loads(dry.stdout[dry.stdout.index("{"):])["notes"]
        assert any("'Unnamed: 0' has no name in the header" in n and "index=False" in n
                   and "--ignore 'Unnamed: 0'" in n for n in notes), notes
    plain = run("train", "plain.csv", "--dry-run")
    assert "has no name" not in plain.stdout + plain.stderr


def test_ignore_leaves_columns_out_in_memory_streamed_and_for_prediction(run, tmp_path):
    """--ignore names columns that are not features (a written row index, an identifier):
    the model is that of the file without them, in memory and streamed, and it predicts on
    files that have them. Names that are not columns, or that name the label, are errors."""
    frame = pd.read_csv(DATA / "iris.csv")
    frame.to_csv(tmp_path / "plain.csv", index=False)
    frame.insert(0, "id", [f"u{i:04d}" for i in range(150)])
    frame.to_csv(tmp_path / "indexed.csv")
    settings = ["--optimizer", "lbfgs", "-q"]
    assert run("train", "plain.csv", "-o", "plain", *settings).exit_code == 0
    reference = load_model(tmp_path / "plain")
    for stream in ([], ["--stream"]):
        out = f"ignored{len(stream)}"
        trained = run("train", "indexed.csv", "--ignore", "Unnamed: 0, id", "-o", out,
                      *settings, *stream)
        assert trained.exit_code == 0, trained.stderr
        model = load_model(tmp_path / out)
        assert list(model.feature_names) == list(reference.feature_names)
        np.testing.assert_allclose(model.params, reference.params, rtol=1e-9, atol=1e-12)
    assert run("predict", "ignored0", "indexed.csv", "--proba").stdout == \
        run("predict", "plain", "plain.csv", "--proba").stdout
    for args, code, words in [
            (["indexed.csv", "--ignore", "nope"], 1, "no column(s) 'nope' to ignore"),
            (["indexed.csv", "--ignore", "species"], 1, "--ignore names 'species', the label"),
            (["sklearn:iris", "--ignore", "id"], 2, "--ignore: for CSV files")]:
        refused = run("train", *args, "-q", "-o", "refused")
        assert refused.exit_code == code and words in refused.stderr, refused.stderr
        assert refused.stderr.count("\n") == 1


def _coffee_rows(n=4000, odd=3000):
    """A CSV's text with 'café' (outside ASCII) once, in row ``odd``, in a categorical column
    and as a label."""
    return "a,drink,y\n" + "".join(
        f"{i % 7},{'café' if i == odd else ('tea', 'milk')[i % 2]},"
        f"{'café' if i == odd else i % 3}\n" for i in range(n))


@pytest.mark.parametrize("stream", [False, True])
def test_a_file_in_another_encoding_is_named_and_read_with_encoding(run, tmp_path, stream):
    """A spreadsheet's CSV in Windows-1252: the byte of 'é' far down the file (past the
    lines sniffed and the header) ended in "cannot parse the file as CSV ('utf-8' codec
    can't decode ...)", with nothing to do about it. Now the line is named and --encoding
    reads it: the same model as the UTF-8 file's, and the same predictions."""
    text = _coffee_rows()
    (tmp_path / "utf8.csv").write_text(text, encoding="utf-8")
    (tmp_path / "win.csv").write_bytes(text.encode("cp1252"))
    extra = ["--stream"] if stream else []
    settings = ["--optimizer", "lbfgs", "-q", *extra]
    refused = run("train", "win.csv", "-o", "refused", *settings)
    assert refused.exit_code == 1 and refused.stderr.count("\n") == 1
    assert "not UTF-8 text (byte 0xe9 on line 3,002)" in refused.stderr, refused.stderr
    assert "--encoding" in refused.stderr and not (tmp_path / "refused").exists()
    assert run("train", "utf8.csv", "-o", "utf8", *settings).exit_code == 0
    trained = run("train", "win.csv", "--encoding", "cp1252", "-o", "win", *settings)
    assert trained.exit_code == 0, trained.stderr
    reference, model = load_model(tmp_path / "utf8"), load_model(tmp_path / "win")
    assert list(model.classes) == list(reference.classes) and "café" in model.classes
    assert list(model.feature_names) == list(reference.feature_names)
    np.testing.assert_allclose(model.params, reference.params, rtol=1e-9, atol=1e-12)
    expected = run("predict", "utf8", "utf8.csv", "--proba").stdout
    assert "café" in expected
    assert run("predict", "win", "win.csv", "--proba", "--encoding", "cp1252").stdout == expected
    # Excel's "Unicode Text": UTF-16 with a byte-order mark, tab-separated
    (tmp_path / "unicode.txt").write_bytes(text.replace(",", "\t").encode("utf-16"))
    named = run("train", "unicode.txt", "-o", "u16", *settings)
    assert named.exit_code == 1 and "UTF-16 text (its first bytes are a byte-order mark" in \
        named.stderr and "pass --encoding utf-16" in named.stderr
    assert run("train", "unicode.txt", "--encoding", "utf-16", "-o", "u16",
               *settings).exit_code == 0
    np.testing.assert_allclose(load_model(tmp_path / "u16").params, reference.params,
                               rtol=1e-9, atol=1e-12)
    # the encoding is the file's, not the model's: the UTF-8 file is read as UTF-8
    assert run("predict", "win", "utf8.csv", "--proba").stdout == expected


def test_a_broken_libsvm_line_is_named_with_what_to_do(run, tmp_path):
    """scikit-learn's reader says only that indices "should be sorted and unique", with no
    line; LIBSVM's own refuses such a line by number. A NaN said "the features contain NaN
    or infinite values", with no row."""
    good = "".join(f"{i % 2} 1:{i} 4:{i * 0.5}\n" for i in range(40))
    for line, words in [("1 4:1 2:3", "line 31: feature index 2 comes after a larger index"),
                        ("1 2:1 2:3", "line 31: feature index 2 comes twice"),
                        ("1 2:1 3:x", "line 31: '3:x' is not index:value"),
                        ("1 2:nan 3:1", "line 31: feature 2 is nan; features must be finite"),
                        ("1 qid:3 2:1 3:inf", "line 31: feature 3 is inf")]:
        lines = good.splitlines(keepends=True)
        (tmp_path / "bad.svm").write_text("".join(lines[:30] + [line + "\n"] + lines[30:]))
        refused = run("train", "bad.svm", "-q", "-o", "refused")
        assert refused.exit_code == 1 and words in refused.stderr, refused.stderr
        assert refused.stderr.count("\n") == 1
    X = np.ones((5, 3))
    X[3, 2] = np.inf
    np.save(tmp_path / "X.npy", np.column_stack([X, [0, 1, 0, 1, 0]]))
    refused = run("train", "X.npy", "-q", "-o", "refused")
    assert "the features hold inf at row 3, column 2 (counting from 0)" in refused.stderr


def _compressed(kind: str, data: bytes) -> bytes:
    import bz2
    import gzip
    import lzma

    return {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}[kind](data)


@pytest.mark.parametrize("stream", [False, True])
def test_compressed_files_train_and_predict_as_the_plain_ones(run, tmp_path, stream):
    """A gzip, bzip2 or xz file (known by its first bytes, whatever its name) is read through
    its decompressor, as pandas and scikit-learn's LIBSVM reader read one: the data.csv.gz of
    a pandas user was "not a UTF-8 text file"; the .bz2 files LIBSVM's data sets come in
    were "not a valid LIBSVM file"; a zip archive of one file is how Kaggle's data sets come.
    Each trains the model of the plain file and predicts its bytes."""
    import zipfile

    iris = (DATA / "iris.csv").read_bytes()
    (tmp_path / "plain.csv").write_bytes(iris)
    for kind in ("gz", "bz2", "xz"):
        (tmp_path / f"iris.csv.{kind}").write_bytes(_compressed(kind, iris))
    (tmp_path / "unnamed.csv").write_bytes(_compressed("gz", iris))  # no compression suffix
    with zipfile.ZipFile(tmp_path / "iris.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("iris.csv", iris)  # as Kaggle's data sets come
    (tmp_path / "tabs.tsv.gz").write_bytes(_compressed("gz", iris.replace(b",", b"\t")))
    settings = ["--optimizer", "lbfgs", "-q", *(["--stream"] if stream else [])]
    assert run("train", "plain.csv", "-o", "plain", *settings).exit_code == 0
    reference = load_model(tmp_path / "plain")
    expected = run("predict", "plain", "plain.csv", "--proba").stdout
    for name in ("iris.csv.gz", "iris.csv.bz2", "iris.csv.xz", "unnamed.csv", "tabs.tsv.gz",
                 "iris.zip"):
        trained = run("train", name, "-o", name + ".run", *settings)
        assert trained.exit_code == 0, (name, trained.stderr)
        model = load_model(tmp_path / (name + ".run"))
        assert list(model.feature_names) == list(reference.feature_names)
        np.testing.assert_allclose(model.params, reference.params, rtol=1e-9, atol=1e-12)
        assert run("predict", "plain", name, "--proba").stdout == expected, name
    cut = _compressed("gz", iris * 40)
    (tmp_path / "cut.csv.gz").write_bytes(cut[:len(cut) // 2])
    for args in (["train", "cut.csv.gz", "-o", "cut", *settings],
                 ["predict", "plain", "cut.csv.gz", "-o", "out.csv"]):
        refused = run(*args)
        assert refused.exit_code == 1 and refused.stderr.count("\n") == 1, refused.stderr
        assert "cut.csv.gz: the gzip data are cut short or damaged" in refused.stderr
    assert not (tmp_path / "cut").exists() and not (tmp_path / "out.csv").exists()


def test_compressed_libsvm_and_fasttext_files_are_the_plain_ones(run, tmp_path):
    X, y = _separable()
    _libsvm(tmp_path / "plain.svm", X, y, 1)
    (tmp_path / "data.svm.bz2").write_bytes(_compressed("bz2", (tmp_path / "plain.svm")
                                                        .read_bytes()))
    text = "".join(f"__label__{('tea', 'coffee')[i % 2]} {('green', 'black')[i % 2]} cup {i % 5}"
                   "\n" for i in range(60)).encode()
    (tmp_path / "plain.txt").write_bytes(text)
    (tmp_path / "data.txt.gz").write_bytes(_compressed("gz", text))
    for plain, packed, extra in (("plain.svm", "data.svm.bz2", []),
                                 ("plain.txt", "data.txt.gz", []),
                                 ("plain.txt", "data.txt.gz", ["--stream"])):
        for name in (plain, packed):
            assert run("train", name, "-o", name + str(extra), "-q", "--optimizer", "lbfgs",
                       *extra).exit_code == 0
        model = load_model(tmp_path / (packed + str(extra)))
        np.testing.assert_allclose(model.params,
                                   load_model(tmp_path / (plain + str(extra))).params,
                                   rtol=1e-9, atol=1e-12)


def test_files_that_are_no_text_and_unknown_encodings_are_named(run, tmp_path):
    import zipfile

    (tmp_path / "data.csv.zst").write_bytes(b"\x28\xb5\x2f\xfd" + bytes(range(200)))
    with zipfile.ZipFile(tmp_path / "book.csv", "w") as archive:  # an .xlsx named .csv
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
    with zipfile.ZipFile(tmp_path / "parts.zip", "w") as archive:
        archive.writestr("a.csv", _coffee_rows(50, 3))
        archive.writestr("b.csv", _coffee_rows(50, 3))
    (tmp_path / "data.txt").write_bytes(b"__label__a good tea\n__label__b caf\xe9 au lait\n")
    for args, code, words in [
            (["data.csv.zst"], 1, "data.csv.zst: a zstd-compressed file, not a text file"),
            (["book.csv"], 1, "book.csv: an Excel workbook, not one data file: save the "
                              "sheet as CSV"),
            (["parts.zip"], 1, "parts.zip: a zip archive of 2 files, not one data file: "
                               "extract the data file"),
            (["data.txt"], 1, "line 2 is not UTF-8 text (byte 0xe9): fastText files are "
                              "UTF-8"),
            (["book.csv", "--encoding", "klingon"], 2, "no such text encoding"),
            (["sklearn:iris", "--encoding", "latin-1"], 2, "--encoding: for CSV files")]:
        refused = run("train", *args, "-q", "-o", "refused")
        assert refused.exit_code == code and words in refused.stderr, refused.stderr
        assert refused.stderr.count("\n") == 1


def test_a_level_named_as_another_column_gets_a_name_of_its_own(run, tmp_path):
    """Column 'color' with level 'red' and a numeric column 'color=red' made two features
    named 'color=red', one table row each in inspect, with no telling them apart. The
    level's is now "color='red'"; the numeric column keeps its name, and its coefficient is
    that of the same column under another name."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"color": rng.choice(["red", "blue"], 80),
                          "color=red": rng.normal(size=80), "y": rng.integers(0, 2, 80)})
    frame.to_csv(tmp_path / "clash.csv", index=False)
    frame.rename(columns={"color=red": "shade"}).to_csv(tmp_path / "plain.csv", index=False)
    settings = ["--optimizer", "lbfgs", "-q", "--val-fraction", "0"]
    assert run("train", "clash.csv", "-o", "clash", *settings).exit_code == 0
    assert run("train", "plain.csv", "-o", "plain", *settings).exit_code == 0
    clash, plain = load_model(tmp_path / "clash"), load_model(tmp_path / "plain")
    assert list(clash.feature_names) == ["color=blue", "color='red'", "color=red"]
    assert list(plain.feature_names) == ["color=blue", "color=red", "shade"]
    np.testing.assert_allclose(clash.params, plain.params, rtol=1e-9, atol=1e-12)
    dry = run("train", "clash.csv", "--dry-run")
    assert json.loads(dry.stdout[dry.stdout.index("{"):])["features"] == \
        list(clash.feature_names)
    table = run("inspect", "clash", "clash.csv").stdout
    assert "color='red'" in table and table.count("color=red ") == 1


def test_labels_that_write_one_number_two_ways_are_noted(run, tmp_path):
    """In a label column that also holds text, '1' and '1.0' stay text: two classes of one
    number, with no word (a column of numbers alone reads them as one class)."""
    (tmp_path / "mixed.csv").write_text("a,y\n" + "".join(
        f"{i},{('1', 'a', '1.0')[i % 3]}\n" for i in range(30)))
    dry = run("train", "mixed.csv", "--dry-run")
    notes = json.loads(dry.stdout[dry.stdout.index("{"):])["notes"]
    assert any("the labels '1', '1.0' differ only in how they write one number" in n
               for n in notes), notes


@pytest.mark.parametrize("stream", [False, True])
def test_a_count_named_as_the_label_is_noted(run, tmp_path, stream):
    """A whole-number measurement in the last column (a count, an age) was trained as a class
    for each of its values, most of them one row, with no word; iris's 3 classes of 50 rows
    are not noted."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=300), "visits": rng.integers(0, 200, 300)})
    frame.to_csv(tmp_path / "count.csv", index=False)
    singles = int(np.count_nonzero(np.bincount(frame["visits"]) == 1))
    extra = ["--stream"] if stream else []
    dry = run("train", "count.csv", "--dry-run", *extra)
    notes = json.loads(dry.stdout[dry.stdout.index("{"):])["notes"]
    distinct = frame["visits"].nunique()
    assert any(f"column 'visits' make {distinct} classes of 300 rows" in n
               and f"{singles} with a single row" in n and "--target" in n
               for n in notes), notes
    (tmp_path / "iris.csv").write_text((DATA / "iris.csv").read_text())
    dry = run("train", "iris.csv", "--dry-run", *extra)
    assert "classes of" not in dry.stdout


@pytest.mark.parametrize("stream", [False, True])
def test_a_label_column_first_is_noted(run, tmp_path, stream):
    """An MNIST-style file puts the labels first; by default the last column is the label, so
    the last pixel trained as 17 classes and the labels as a feature (validation accuracy
    0.94 of nothing), with no word."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    frame = pd.DataFrame(digits.data.astype(int), columns=[f"pixel{i}" for i in range(64)])
    frame.insert(0, "Label", digits.target)
    frame.to_csv(tmp_path / "digits.csv", index=False)
    extra = ["--stream"] if stream else []
    dry = run("train", "digits.csv", "--dry-run", *extra)
    notes = json.loads(dry.stdout[dry.stdout.index("{"):])["notes"]
    assert any("column 'Label' is named as a label column is, but the labels are read from "
               "'pixel63'" in n and "--target 'Label'" in n for n in notes), notes
    chosen = run("train", "digits.csv", "--dry-run", "--target", "Label", *extra)
    assert json.loads(chosen.stdout[chosen.stdout.index("{"):])["notes"] == []


@pytest.mark.parametrize("stream", [False, True])
def test_a_file_without_a_header_is_noted(run, tmp_path, stream):
    """UCI's iris.data has no header: its first row became the column names ('5.1', '3.5',
    ..., the label column 'setosa') and left the data, with no word. An array's columns as
    pandas names them (0, 1, 2, ...) are not noted."""
    lines = (DATA / "iris.csv").read_text().splitlines()
    (tmp_path / "iris.data").write_text("\n".join(lines[1:]) + "\n")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(40, 3)))
    frame["y"] = rng.integers(0, 2, 40)
    frame.to_csv(tmp_path / "array.csv", index=False)
    extra = ["--stream"] if stream else []
    for name, noted in (("iris.data", True), ("array.csv", False)):
        dry = run("train", name, "--dry-run", *extra)
        notes = json.loads(dry.stdout[dry.stdout.index("{"):])["notes"]
        expected = "the column names are numbers ('5.1', '3.5', '1.4', '0.2'): if the first " \
            "line is a row of data, the file has no header, and that row was read as the " \
            "names and is missing from the data: pass --no-header"
        assert any(expected in n for n in notes) == noted, (name, notes)
    # --no-header reads it: columns c1, c2, ...; the model of the file with its header, and
    # the model keeps the setting, so it predicts later files without one the same way
    (tmp_path / "iris.csv").write_text("\n".join(lines) + "\n")
    settings = ["--optimizer", "lbfgs", "-q", *extra]
    assert run("train", "iris.csv", "-o", "named", *settings).exit_code == 0
    trained = run("train", "iris.data", "--no-header", "-o", "unnamed", *settings)
    assert trained.exit_code == 0, trained.stderr
    named, unnamed = load_model(tmp_path / "named"), load_model(tmp_path / "unnamed")
    assert list(unnamed.feature_names) == ["c1", "c2", "c3", "c4"]
    np.testing.assert_allclose(unnamed.params, named.params, rtol=1e-9, atol=1e-12)
    assert run("predict", "unnamed", "iris.data").stdout == \
        run("predict", "named", "iris.csv").stdout
    refused = run("train", "sklearn:iris", "--no-header", "-o", "r")
    assert refused.exit_code == 2 and "--no-header: for CSV files" in refused.stderr
    # without a header the first data row is line 1, not 2: messages count so
    unlabelled = lines[1:]
    unlabelled[5] = unlabelled[5].rsplit(",", 1)[0] + ","
    (tmp_path / "unlabelled.data").write_text("\n".join(unlabelled) + "\n")
    missing = run("train", "unlabelled.data", "--no-header", "-o", "m", *settings)
    assert "1 row(s) have no label in column 'c5' (file lines [6])" in missing.stderr
    holed = lines[1:]
    holed[100] = ",".join(holed[100].split(",")[:1] + [""] + holed[100].split(",")[2:])
    (tmp_path / "holed.data").write_text("\n".join(holed) + "\n")
    assert "missing values in column(s) 'c2' (1) (lines [101])" in \
        run("predict", "unnamed", "holed.data").stderr


@pytest.mark.parametrize("stream", [False, True])
def test_lines_that_end_with_a_delimiter_say_how_to_read_them(run, tmp_path, stream):
    """A trailing delimiter on every line makes an empty last column, 'Unnamed: 5', taken
    as the label: "150 row(s) have no label ... fill them in", advice that cannot be
    followed. The error now says what the file is and which options read it; they train the
    plain file's model."""
    text = (DATA / "iris.csv").read_text()
    (tmp_path / "trailing.csv").write_text("".join(line + ",\n" for line in text.splitlines()))
    extra = ["--stream"] if stream else []
    refused = run("train", "trailing.csv", "-o", "r", "-q", *extra)
    assert refused.exit_code == 1 and refused.stderr.count("\n") == 1
    assert "the label column 'Unnamed: 5', the last, is empty on every line: if each line " \
        "ends with a delimiter, name the label column with --target and leave this one out " \
        "with --ignore 'Unnamed: 5'" in refused.stderr, refused.stderr
    settings = ["--optimizer", "lbfgs", "-q", *extra]
    (tmp_path / "plain.csv").write_text(text)
    assert run("train", "plain.csv", "-o", "plain", *settings).exit_code == 0
    assert run("train", "trailing.csv", "--target", "species", "--ignore", "Unnamed: 5",
               "-o", "read", *settings).exit_code == 0
    np.testing.assert_allclose(load_model(tmp_path / "read").params,
                               load_model(tmp_path / "plain").params, rtol=1e-9, atol=1e-12)


def test_a_comma_that_may_separate_thousands_or_decimals_gets_both_readings(run, tmp_path):
    (tmp_path / "amb.csv").write_text("a,b,y\n" + "".join(
        f'"{i},{(i * 397) % 1000:03d}",{i},{i % 2}\n' for i in range(1, 9)))
    dry = run("train", "amb.csv", "--dry-run")
    notes = json.loads(dry.stdout[dry.stdout.index("{"):])["notes"]
    assert any("'a'" in n and "--thousands ',' if it separates thousands, or --decimal ','"
               in n for n in notes), notes


def test_a_csv_of_one_float_feature_trains_to_scikit_learns_optimum(run, tmp_path):
    """One float column beside the labels: under pandas' copy-on-write its values came as a
    read-only view, and the split that moves rows in place raised a ValueError traceback."""
    from conftest import sklearn_optimum

    frame = pd.read_csv(DATA / "iris.csv").iloc[50:]
    X = frame[["sepal length (cm)"]].to_numpy()
    X = (X - X.mean()) / X.std()
    frame[["sepal length (cm)", "species"]].to_csv(tmp_path / "one.csv", index=False)
    trained = run("train", "one.csv", "-o", "r", "--optimizer", "lbfgs", "--val-fraction", "0",
                  "--l2", "0.01", "--tol", "1e-10", "-q")
    assert trained.exit_code == 0, trained.stderr
    model = load_model(tmp_path / "r")
    y = (frame["species"] == "virginica").to_numpy().astype(int)  # classes sorted by name
    expected, _ = sklearn_optimum(X, y, 0.01)
    # the model's coefficients act on standardised features, as scikit-learn's here do
    np.testing.assert_allclose(model.params, expected, rtol=1e-6)


def test_suspicious_columns_and_labels_are_reported_and_options_fix_them(run, tmp_path):
    frame = pd.read_csv(DATA / "iris.csv")
    frame["sepal length (cm)"] = frame["sepal length (cm)"].astype(object)
    frame.loc[5, "sepal length (cm)"] = "?"
    frame.insert(0, "count", [f"{1000 + 37 * i:,}.5" for i in range(150)])
    frame.loc[3, "species"] = frame.loc[3, "species"] + " "
    frame.to_csv(tmp_path / "odd.csv", index=False)
    dry = run("train", "odd.csv", "--dry-run")
    notes = json.loads(dry.stdout[dry.stdout.index("{"):])["notes"]
    assert any("'sepal length (cm)'" in n and "--na-values '?'" in n for n in notes)
    assert any("'count'" in n and "--thousands ','" in n for n in notes)
    assert any("'setosa', 'setosa '" in n for n in notes)
    trained = run("train", "odd.csv", "-o", "r", "--epochs", "3")
    assert "--na-values" in trained.stderr and "--thousands" in trained.stderr
    fixed = run("train", "odd.csv", "-o", "f", "--na-values", "?", "--thousands", ",",
                "--impute", "mean", "--json", "-q", "--epochs", "3")
    summary = json.loads(fixed.stdout)
    assert summary["n_features"] == 5  # count and sepal_length are numbers now
    clean = frame.copy()
    clean["count"] = [1000.5 + 37 * i for i in range(150)]
    clean.loc[5, "sepal length (cm)"] = np.nan
    clean.to_csv(tmp_path / "clean.csv", index=False)
    # the model reads later files as its training data were read: '?' missing, 1,037.5 a number
    assert run("predict", "f", "odd.csv", "--proba").stdout == \
        run("predict", "f", "clean.csv", "--proba").stdout


@pytest.mark.parametrize("sep, name", [(";", "semi.csv"), ("\t", "tabs.tsv"), ("|", "p.txt")])
def test_the_delimiter_is_sniffed_and_said(run, tmp_path, sep, name):
    frame = pd.read_csv(DATA / "iris.csv")
    frame.to_csv(tmp_path / name, index=False, sep=sep)
    result = run("train", name, "-o", "r", "--json", "--optimizer", "lbfgs", "--epochs", "50")
    assert result.exit_code == 0, result.output
    assert f"delimiter {sep!r}" in result.stderr
    assert json.loads(result.stdout)["n_features"] == 4
    plain = run("train", DATA / "iris.csv", "-o", "p", "--json", "--optimizer", "lbfgs",
                "--epochs", "50", "-q")
    assert json.loads(result.stdout)["objective"] == json.loads(plain.stdout)["objective"]
    assert delimiter(tmp_path / name, ReadOptions(sep=",")) == ","  # --sep wins
    forced = run("train", name, "--sep", ",", "-o", "f", "-q")
    assert forced.exit_code == 1 and "no feature columns" in forced.stderr


def test_a_config_gives_the_same_model_from_any_directory(run, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "c").mkdir(parents=True)
    pd.read_csv(DATA / "iris.csv").to_csv(tmp_path / "a" / "iris.csv", index=False)
    (tmp_path / "a" / "x.toml").write_text('[data]\nsource = "iris.csv"\n[optim]\nepochs = 20\n')
    assert run("train", "--config", "a/x.toml", "-o", "one", "-q").exit_code == 0
    assert run("train", "a/iris.csv", "--epochs", "20", "-o", "given", "-q").exit_code == 0
    os.chdir(tmp_path / "b" / "c")
    assert run("train", "--config", "../../a/x.toml", "-o", tmp_path / "two", "-q").exit_code == 0
    # the resolved config.toml a run wrote, run again from elsewhere
    assert run("train", "--config", "../../one/config.toml", "-o", "three", "-q").exit_code == 0
    first = (tmp_path / "one/model.npz").read_bytes()
    assert first == (tmp_path / "two/model.npz").read_bytes()
    assert first == (tmp_path / "b/c/three/model.npz").read_bytes()
    assert first == (tmp_path / "given/model.npz").read_bytes()


# ---- lost or unusable work ----------------------------------------------------------------

XENT = [sys.executable, "-m", "xent.cli"]


def test_runs_started_on_one_directory_at_once_leave_one_whole_run(tmp_path):
    command = XENT + ["train", "sklearn:digits", "--epochs", "150", "-q", "-o", "same"]
    processes = [subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in processes]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 1, 1, 1], results
    for code, stderr in results:
        if code:
            assert "same" in stderr and ("another xent run" in stderr
                                         or "a run directory exists there" in stderr)
            assert stderr.count("\n") == 1  # one line
    summary = json.loads((tmp_path / "same/summary.json").read_text())
    assert summary["epochs"] == 150
    assert not (tmp_path / "same" / ".xent-run.lock").exists()


def test_a_run_killed_mid_training_can_be_resumed_and_says_so(run, tmp_path):
    settings = ["train", "sklearn:wine", "--epochs", "300", "--tol", "0", "-q"]
    assert run(*settings, "-o", "whole").exit_code == 0
    process = subprocess.Popen(XENT + settings + ["--checkpoint-every", "1", "-o", "cut"],
                               cwd=tmp_path, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (tmp_path / "cut/checkpoint.npz").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert (tmp_path / "cut/config.toml").exists()  # written before the first epoch
    assert json.loads((tmp_path / "whole/summary.json").read_text())["epochs"] == 300
    evaluated = run("eval", "cut", "sklearn:wine")
    assert evaluated.exit_code == 1 and "--resume cut" in evaluated.stderr
    resumed = run("train", "--resume", "cut", "-q")  # the dead run's lock is stale
    assert resumed.exit_code == 0, resumed.output
    assert (tmp_path / "cut/model.npz").read_bytes() == (tmp_path / "whole/model.npz").read_bytes()


def test_closed_pipes_never_stop_training_and_end_quietly(tmp_path):
    # stderr closed by its reader (`2>&1 | head`): training goes on and saves everything
    process = subprocess.Popen(XENT + ["train", "sklearn:iris", "-o", "r", "--epochs", "300"],
                               cwd=tmp_path, stderr=subprocess.PIPE)
    process.stderr.close()
    assert process.wait(timeout=120) == 0
    assert json.loads((tmp_path / "r/summary.json").read_text())["epochs"] == 300
    # stdout closed before anything is printed: no error message, exit 141 (SIGPIPE's)
    process = subprocess.Popen(XENT + ["train", "sklearn:iris", "--dry-run"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()
    assert process.wait(timeout=120) == 141
    assert process.stderr.read() == ""


def test_a_full_disk_names_the_file_and_leaves_a_resumable_run(run, tmp_path, monkeypatch):
    import errno

    from xent import atomic

    real_fsync = os.fsync

    def fsync(fd):  # the disk is full when the model is written
        if ".model.npz." in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    whole = run("train", "sklearn:iris", "-o", "whole", "-q")
    assert whole.exit_code == 0
    monkeypatch.setattr(atomic.os, "fsync", fsync)
    full = run("train", "sklearn:iris", "-o", "full", "-q")
    assert full.exit_code == 1
    assert "full/model.npz: No space left on device" in full.stderr
    assert "--resume" in full.stderr and full.stderr.count("\n") == 1
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["checkpoint.npz",
                                                                     "config.toml"]
    monkeypatch.setattr(atomic.os, "fsync", real_fsync)
    assert run("train", "--resume", "full", "-q").exit_code == 0
    assert (tmp_path / "full/model.npz").read_bytes() == (tmp_path / "whole/model.npz").read_bytes()


def test_written_files_respect_the_umask_and_keep_an_existing_mode(run, tmp_path):
    previous = os.umask(0o027)
    try:
        assert run("train", "sklearn:iris", "-o", "r", "-q", "--epochs", "5").exit_code == 0
        for name in ("config.toml", "metrics.csv", "model.npz", "loss.png", "summary.json"):
            assert (tmp_path / "r" / name).stat().st_mode & 0o777 == 0o640, name
        (tmp_path / "p.csv").write_text("old\n")
        (tmp_path / "p.csv").chmod(0o604)
        assert run("predict", "r", "sklearn:iris", "-o", "p.csv").exit_code == 0
        assert (tmp_path / "p.csv").stat().st_mode & 0o777 == 0o604
        assert (tmp_path / "p.csv").read_text().startswith("prediction\n")
    finally:
        os.umask(previous)


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGKILL, -9)])
def test_a_stopped_sweep_stops_its_workers(tmp_path, signum, code):
    (tmp_path / "s.toml").write_text('[data]\nsource = "sklearn:digits"\n[optim]\n'
                                     'epochs = 1000000\ntol = 0.0\n[sweep]\n'
                                     '"model.l2" = [1e-4, 1e-3, 1e-2, 1e-1]\n')
    sweep = subprocess.Popen(XENT + ["sweep", "s.toml", "-o", "sw", "--jobs", "2", "-q"],
                             cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(workers := _children(sweep.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(workers) == 2
    time.sleep(1.0)  # training under way
    sweep.send_signal(signum)
    assert sweep.wait(timeout=30) == code
    deadline = time.monotonic() + 3
    while not all(_gone(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(pid) for pid in workers)
    time.sleep(1.0)
    assert not list((tmp_path / "sw").glob("*/summary.json"))  # nothing ran on, or started
    assert not list((tmp_path / "sw").glob("002-*"))


def test_ctrl_c_stops_a_sequential_sweep_before_the_next_point(tmp_path):
    (tmp_path / "s.toml").write_text('[data]\nsource = "sklearn:digits"\n[optim]\n'
                                     'epochs = 1000000\ntol = 0.0\n[sweep]\n'
                                     '"model.l2" = [1e-4, 1e-3]\n')
    sweep = subprocess.Popen(XENT + ["sweep", "s.toml", "-o", "sw", "-q"], cwd=tmp_path,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "sw").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2.0)
    sweep.send_signal(signal.SIGINT)
    assert sweep.wait(timeout=30) == 130
    assert "--resume" in sweep.stderr.read()
    assert not list((tmp_path / "sw").glob("001-*"))


# ---- contract breaks ----------------------------------------------------------------------

def test_gradcheck_passes_correct_gradients_with_near_zero_entries(run, tmp_path,
                                                                   monkeypatch):
    # digits has constant pixels: their gradient entries are ~0, and the finite differences'
    # rounding (~1e-11) is huge relative to them, but not to the gradient's scale
    digits = run("gradcheck", "sklearn:digits", "--json")
    assert digits.exit_code == 0, digits.stdout
    assert json.loads(digits.stdout)["max_rel_error"] < 1e-6
    X, y = _separable(n=200, d=40)
    X[:, 5:] *= np.random.default_rng(1).random((200, 35)) < 0.05  # sparse columns
    _libsvm(tmp_path / "sparse.svm", X, y, base=1)
    assert run("gradcheck", "sparse.svm").exit_code == 0
    from xent import explain

    real = explain.loss_and_grad

    def wrong(params, *args, **kwargs):  # one small entry off by 1e-4 of the scale
        value, grad = real(params, *args, **kwargs)
        grad = grad.copy()
        grad[-2, 0] += 1e-4 * np.abs(grad).max()
        return value, grad

    monkeypatch.setattr(explain, "loss_and_grad", wrong)
    caught = run("gradcheck", "sparse.svm")
    assert caught.exit_code == 1 and "FAILED" in caught.stdout


def test_gradcheck_passes_a_correct_gradient_at_an_optimum(run, tmp_path, monkeypatch):
    """Five steps reach the optimum of these ten rows, where the whole gradient is about 1e-7:
    measured against it, the central differences' rounding (5e-12) read as a relative error
    of 5e-5 and a correct gradient FAILED. An error of 1e-8 in one entry is still caught."""
    (tmp_path / "flat.csv").write_text("a,y\n" + "".join(f"{i + 0.5},{i % 2}\n"
                                                          for i in range(1, 11)))
    checked = run("gradcheck", "flat.csv", "--json")
    assert checked.exit_code == 0, checked.stdout
    report = json.loads(checked.stdout)
    assert report["max_rel_error"] < 1e-6
    from xent import explain

    real = explain.loss_and_grad

    def wrong(params, *args, **kwargs):
        value, grad = real(params, *args, **kwargs)
        grad = grad.copy()
        grad[-1, 0] += 1e-8
        return value, grad

    monkeypatch.setattr(explain, "loss_and_grad", wrong)
    caught = run("gradcheck", "flat.csv")
    assert caught.exit_code == 1 and "FAILED" in caught.stdout


def test_weights_whose_total_overflows_are_refused_in_one_line(run, tmp_path):
    """Weights of 1e308 add up to inf, and the loss divides by that total: the run failed
    blaming the features' X^T X under a RuntimeWarning, or (lbfgs) in an IndexError traceback.
    Weights whose total is finite, however large, train the model of weights of 1."""
    frame = pd.read_csv(DATA / "iris.csv")
    for name, weight in (("big", 1e200), ("one", 1.0), ("huge", 1e308)):
        weighted = frame.copy()
        weighted.insert(0, "w", weight)  # the label stays the last column
        weighted.to_csv(tmp_path / f"{name}.csv", index=False)
    settings = ["--weight", "w", "--optimizer", "lbfgs", "-q"]
    assert run("train", "one.csv", "-o", "one", *settings).exit_code == 0
    assert run("train", "big.csv", "-o", "big", *settings).exit_code == 0
    np.testing.assert_allclose(load_model(tmp_path / "big").params,
                               load_model(tmp_path / "one").params, rtol=1e-8, atol=1e-10)
    for optimizer, stream in (("lbfgs", []), ("lbfgs", ["--stream"]), ("nesterov", [])):
        refused = run("train", "huge.csv", "-o", "huge", *settings, *stream,
                      "--optimizer", optimizer)
        assert refused.exit_code == 1 and refused.stderr.count("\n") == 1, refused.stderr
        assert "sample weights add up to more than float64 holds" in refused.stderr
        assert not (tmp_path / "huge").exists()
    # a weight written as a word was "holds text", with no line nor what to do
    worded = frame.copy()
    worded.insert(0, "w", ["1"] * 120 + ["heavy"] + ["2"] * 29)
    worded.to_csv(tmp_path / "worded.csv", index=False)
    for stream in ([], ["--stream"]):
        refused = run("train", "worded.csv", "-o", "worded", *settings, *stream)
        assert refused.exit_code == 1 and "the weight column 'w' holds text ('heavy' on line " \
            "122); give a number on every row" in refused.stderr, refused.stderr
    from xent.errors import DataError
    from xent.estimator import SoftmaxRegression

    X, y = _separable(n=40)
    with pytest.raises(DataError, match="add up to more"):
        SoftmaxRegression().fit(X, y, sample_weight=np.full(40, 1e308))
    # a source of the Python API given such weights as they are: its first point is not
    # finite, and every optimiser's run of no epochs ended in an IndexError before
    from xent.links import get_link
    from xent.loss import Objective, labels_target
    from xent.sources import ArraySource
    from xent.train import Solver, Stopping, fit

    source = ArraySource(X, labels_target(y, 2), np.full(40, 1e308))
    for optimizer in ("lbfgs", "gd", "nesterov", "adam"):
        with pytest.raises(DataError, match="not finite at the starting point"):
            fit(source, Objective(get_link("sigmoid"), 0.0), Solver(optimizer, 0.1),
                Stopping(5, 1e-6))


def test_parameters_too_large_for_memory_are_refused_before_any_is_made(run, tmp_path,
                                                                        monkeypatch):
    """A fastText file of 30,000 labels at the default 2^18 buckets makes W 262,145 x
    30,000 (58.6 GiB): its allocation ended in a MemoryError traceback. The parameters, the
    optimiser's copies and the threads' gradient buffers are now weighed against the memory
    available before any is made (here 400 labels: 1.68 GB with gd, against 100 MB)."""
    from xent import memory
    from xent.errors import DataError
    from xent.estimator import SoftmaxRegression

    monkeypatch.setattr(memory, "available_memory", lambda: 100 << 20)
    (tmp_path / "many.txt").write_text("".join(
        f"__label__c{i % 400} word{i % 13} other{i % 7}\n" for i in range(1200)))
    refused = run("train", "many.txt", "-o", "r", "--optimizer", "gd", "--threads", "1")
    assert refused.exit_code == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "the model would have 104,858,000 parameters (262,144 features and the intercept, " \
           "x 400 outputs)" in refused.stderr and "--buckets" in refused.stderr
    assert not (tmp_path / "r").exists()
    # W whole twice (8 x 400 x 2 x 262,145 bytes: 1.68 GB), and gd's 4 copies and a thread's
    # buffer of the few columns the rows use (narrowed): un-narrowed, 7 whole copies, 5.87 GB
    assert "training needs at least 1.68 GB" in refused.stderr
    # fit counts the copies of the columns sparse rows are narrowed to (here 10 of 20,000):
    # 1 MB holds them (0.3 MB with L-BFGS's), not 30 copies of the whole W (5 MB)
    import scipy.sparse as sp

    monkeypatch.setattr(memory, "available_memory", lambda: 1 << 20)
    rng = np.random.default_rng(1)
    narrow = sp.random(60, 10, density=0.5, format="csr", random_state=1)
    wide = sp.hstack([narrow, sp.csr_matrix((60, 19_990))], format="csr")
    labels = rng.integers(0, 2, 60)
    SoftmaxRegression(optimizer="lbfgs", max_epochs=5).fit(wide, labels)
    with pytest.raises(DataError, match="the model would have 20,001 parameters"):
        SoftmaxRegression(optimizer="lbfgs", max_epochs=5).fit(wide.toarray(), labels)
    small = run("train", "many.txt", "-o", "r", "--buckets", "64", "--epochs", "3", "-q")
    assert small.exit_code == 0, small.stderr
    X = np.random.default_rng(0).normal(size=(50, 20_000))
    with pytest.raises(DataError, match="the model would have"):
        SoftmaxRegression(optimizer="lbfgs").fit(X, np.arange(50) % 25)


def test_a_cache_folder_that_is_a_file_is_named(run, tmp_path, monkeypatch):
    """$XENT_CACHE_DIR set to a file: streaming said only '...: File exists'."""
    pd.read_csv(DATA / "iris.csv").to_csv(tmp_path / "iris.csv", index=False)
    (tmp_path / "a_file").write_text("")
    for folder in ("a_file", "a_file/below"):
        monkeypatch.setenv("XENT_CACHE_DIR", str(tmp_path / folder))
        result = run("train", "iris.csv", "--stream", "-q", "-o", "r")
        assert result.exit_code == 1 and result.stderr.count("\n") == 1
        assert "cache's folder cannot be made, a file is in its path; point $XENT_CACHE_DIR " \
            "at a folder" in result.stderr, result.stderr
        assert not (tmp_path / "r").exists()


def test_compare_refuses_directories_that_are_not_runs(run, tmp_path):
    assert run("train", "sklearn:iris", "-o", "r", "-q", "--epochs", "5").exit_code == 0
    (tmp_path / "notes").mkdir()
    result = run("compare", "r", "notes", "-o", "board")
    assert result.exit_code == 1 and "notes: not a finished run directory" in result.stderr
    assert not (tmp_path / "board").exists()
    assert run("compare", "r", "-o", "board").exit_code == 0


def test_settings_that_do_not_go_together_are_usage_errors(run, tmp_path):
    cache = Path(os.environ["XENT_CACHE_DIR"])
    cached = sorted(cache.iterdir()) if cache.exists() else []
    pd.read_csv(DATA / "iris.csv").to_csv(tmp_path / "iris.csv", index=False)
    X, y = _separable(n=50)
    _libsvm(tmp_path / "d.svm", X, y, base=1)
    (tmp_path / "s.toml").write_text('[data]\nsource = "sklearn:iris"\n[sweep]\n'
                                     '"model.l2" = [0.1, 1.0]\n')
    pd.read_csv(DATA / "iris.csv").to_parquet(tmp_path / "iris.parquet")
    (tmp_path / "d.txt").write_text("__label__a one two\n__label__b three\n")
    for args, words in [
            (["sklearn:iris", "--val-fraction", "0", "--patience", "5"], "--patience"),
            (["--config", "s.toml"], "xent sweep"),
            (["sklearn:iris", "--stream"], "without --stream"),
            (["d.svm", "--stream"], "drop --stream"),
            (["iris.csv", "--stream", "--impute", "median"], "--impute mean or drop"),
            (["sklearn:iris", "--sep", ";"], "--sep: for CSV files"),
            (["d.svm", "--na-values", "?"], "--na-values: for CSV files"),
            (["iris.csv", "--zero-based"], "for LIBSVM files"),
            (["iris.csv", "--thousands", "."], "decimal mark"),
            (["iris.csv", "--thousands", ",", "--decimal", ","], "decimal mark"),
            (["sklearn:iris", "--decimal", ","], "--decimal: for CSV files"),
            (["iris.parquet", "--sep", ";"], "a Parquet file stores typed values"),
            (["d.txt", "--ignore", "text"], "--ignore: for CSV files"),
            (["iris.csv", "--sep", ";;"], "one character")]:
        result = run("train", *args, "-q", "-o", "r")
        assert result.exit_code == 2 and words in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1
    assert not (tmp_path / "r").exists()
    assert (sorted(cache.iterdir()) if cache.exists() else []) == cached  # nothing cached
    frame = pd.read_csv(DATA / "iris.csv")
    frame.insert(0, "empty", np.nan)
    frame.to_csv(tmp_path / "empty.csv", index=False)
    for impute in ("mean", "median"):
        result = run("train", "empty.csv", "--impute", impute, "-q", "-o", "r")
        assert result.exit_code == 1 and "'empty'" in result.stderr


def test_extreme_logits_give_exact_results_without_warnings(run):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a leaked RuntimeWarning fails the test
        result = run("ce", "--target", "0,1", "--logits", "1e308,-1e308", "--json")
    assert result.exit_code == 0 and result.stderr == ""
    assert json.loads(result.stdout)["q"] == [1.0, 0.0]
    assert json.loads(result.stdout)["cross_entropy"] is None  # inf: JSON has no infinity


# ---- a newcomer -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["iris", "wine", "breast_cancer", "digits"])
def test_the_default_settings_converge_on_every_built_in_set(run, name):
    result = run("train", f"sklearn:{name}", "-q", "--json", "-o", name)
    summary = json.loads(result.stdout)
    assert result.exit_code == 0 and summary["converged"], summary["stop_reason"]
    assert summary["optimizer"] == "nesterov" and summary["epochs"] < 5000


def test_overflowing_values_give_one_line_and_no_numpy_warning(tmp_path):
    (tmp_path / "huge.csv").write_text("a,b,c\n1e308,1,x\n-1e308,2,y\n1e308,3,x\n")
    result = subprocess.run(XENT + ["train", "huge.csv", "-q", "-o", "r"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "too large" in result.stderr
