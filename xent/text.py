"""Free text as features: each text column's word n-grams hashed into ``buckets`` counts.

A document becomes the counts of its n-grams (lower-cased runs of two or more letters, digits
or underscores, as scikit-learn's ``HashingVectorizer`` tokenises; an n-gram is n tokens joined
by a space), each counted in bucket |MurmurHash3(n-gram)| mod ``buckets``; the counts are kept
as they are (``norm = "none"``, the default: a softmax on counts is the multinomial model of
word frequencies) or each row scaled to unit length (``"l2"``). Hashing needs no vocabulary:
nothing is fitted, a word never seen in training lands in some bucket like any other, and the
settings (a ``TextSpec``) are all a model stores to read raw text again. Column c's buckets are
features c * buckets ... (c + 1) * buckets - 1, after the table's other features.

ASCII documents are hashed by a compiled kernel (``_compiled.hash_ascii``, on every core);
others by HashingVectorizer itself (in processes when there are many); both give exactly
HashingVectorizer's counts (the tests hold them to it).

fastText's format (one document a line, its label(s) as ``__label__NAME`` words, e.g.
``__label__spam buy now``) is read into a table with a ``text`` and a ``label`` column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .errors import ConfigError, DataError
from .files import open_bytes, open_text, raise_read_failure
from .threads import items_for, on_threads, thread_count

#: default buckets per text column: 2^18 keeps the collisions of a 50,000-word vocabulary to a
#: few per cent of its words, and W at buckets x classes float64 (42 MB for 20 classes)
DEFAULT_BUCKETS = 1 << 18
NORMS = ("l2", "none")
FASTTEXT_LABEL = "__label__"
#: the lines of a fastText file read, hashed or encoded at a time: the documents' strings
#: are never all in memory, only one block's (the whole file as strings took several times
#: its hashed CSR)
FASTTEXT_BLOCK_LINES = 50_000
#: the columns a fastText file is read into
FASTTEXT_TEXT, FASTTEXT_TARGET = "text", "label"
#: rows below which hashing stays in this process (starting processes costs more)
_PARALLEL_ROWS = 20_000


def parse_ngrams(text: str) -> tuple[int, int]:
    """"1" -> (1, 1), "1-2" -> (1, 2): the n-gram lengths, from the first to the second."""
    parts = str(text).replace(" ", "").split("-")
    try:
        low, high = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (0, 0)
    except ValueError:
        low = high = 0
    if not 1 <= low <= high <= 5:
        raise ConfigError(f"data.ngrams (--ngrams) must be N or N-M with 1 <= N <= M <= 5 "
                          f"(e.g. 1-2: words and word pairs), got {text!r}")
    return low, high


class FeatureNames(Sequence):
    """The names of a table's features with hashed text: ``listed`` (the tabular ones), then
    ``column#bucket`` for every bucket of every text column, each name made when it is asked
    for. A list of 2^18 bucket names would take about 17 MB, the size of a small model."""

    def __init__(self, listed, columns, buckets: int):
        self.listed, self.columns, self.buckets = list(listed), tuple(columns), buckets

    def __len__(self) -> int:
        return len(self.listed) + len(self.columns) * self.buckets

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        position = index + len(self) if index < 0 else index
        if not 0 <= position < len(self):
            raise IndexError(f"feature {index} of {len(self)}")
        if position < len(self.listed):
            return self.listed[position]
        column, bucket = divmod(position - len(self.listed), self.buckets)
        return f"{self.columns[column]}#{bucket}"

    def __eq__(self, other) -> bool:
        if isinstance(other, FeatureNames):
            return (self.listed, self.columns, self.buckets) == \
                (other.listed, other.columns, other.buckets)
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None

    def __repr__(self) -> str:
        return f"FeatureNames({self.listed!r} + {self.columns} x {self.buckets} buckets)"


@dataclass(frozen=True)
class TextSpec:
    """How text columns become features (stored in the model): the columns, the n-gram
    lengths (low, high), the buckets per column and the row norm ("l2" or "none")."""

    columns: tuple[str, ...]
    ngrams: tuple[int, int] = (1, 1)
    buckets: int = DEFAULT_BUCKETS
    norm: str = "none"
    tfidf: bool = False  # counts weighted by idf (fitted on the training rows, kept as a scale)

    @property
    def n_features(self) -> int:
        return len(self.columns) * self.buckets

    @property
    def feature_names(self) -> FeatureNames:
        """``column#bucket`` for every bucket of every text column."""
        return FeatureNames((), self.columns, self.buckets)

    def to_dict(self) -> dict:
        return {"columns": list(self.columns), "ngrams": list(self.ngrams),
                "buckets": self.buckets, "norm": self.norm, "tfidf": self.tfidf}

    @classmethod
    def from_dict(cls, spec: dict) -> TextSpec:
        low, high = spec.get("ngrams", (1, 1))
        return cls(tuple(spec["columns"]), (int(low), int(high)),
                   int(spec.get("buckets", DEFAULT_BUCKETS)), spec.get("norm", "none"),
                   bool(spec.get("tfidf", False)))

    def transform(self, frame, source: str = "data", jobs: int | None = None) -> sp.csr_matrix:
        """The hashed features (n_rows, n_features) CSR float64 of ``frame``'s text columns
        (a missing text is an empty document), using ``jobs`` threads or processes (default:
        ``threads.thread_count``, what --threads and $XENT_THREADS say)."""
        absent = [c for c in self.columns if c not in frame.columns]
        if absent:
            raise DataError(f"{source}: no text column(s) {', '.join(map(repr, absent))}; the "
                            f"columns are {', '.join(map(repr, frame.columns[:20]))}")
        jobs = _jobs(jobs)
        blocks = [self.hash_documents(frame[c].fillna("").astype(str).tolist(), jobs)
                  for c in self.columns]
        return blocks[0] if len(blocks) == 1 else sp.hstack(blocks, format="csr")

    def hash_documents(self, documents: list[str], jobs: int = 1) -> sp.csr_matrix:
        """One text column's documents as (n_documents, buckets) CSR, normed by ``norm``.

        ASCII documents go through the compiled ``_compiled.hash_ascii`` (threads share
        them out); any others through scikit-learn's HashingVectorizer (processes share them
        out when there are many). The two give the same buckets and counts (the tests check
        it), so which way a document goes changes nothing."""
        is_ascii = np.fromiter((d.isascii() for d in documents), dtype=bool,
                               count=len(documents))
        if is_ascii.all():
            X = _hash_ascii(self, documents, jobs)
        else:
            fast = np.flatnonzero(is_ascii)
            slow = np.flatnonzero(~is_ascii)
            parts = [_hash_ascii(self, [documents[i] for i in fast], jobs),
                     _hash_other(self, [documents[i] for i in slow], jobs)]
            X = sp.vstack(parts, format="csr")[np.argsort(np.concatenate([fast, slow]))]
        if self.norm == "l2":
            from sklearn.preprocessing import normalize

            X = normalize(X, norm="l2", copy=False)
        return sp.csr_matrix(X)


def _jobs(jobs: int | None) -> int:
    """``jobs``, or what --threads and $XENT_THREADS say (else every core) when None."""
    if jobs is None:
        jobs = thread_count()
    return max(1, jobs)


def _hash_ascii(spec: TextSpec, documents: list[str], jobs: int) -> sp.csr_matrix:
    """ASCII documents counted in buckets by the compiled kernel, in ``jobs`` slices at once
    (it runs without the GIL), the slices stacked in order."""
    from . import kernels

    compiled = kernels.kernels()
    # a few slices a thread, taken in turn (``on_threads``): a thread slowed by its core takes
    # fewer, and one slice's lowering and encoding (which hold the GIL) overlaps another's count
    slices = items_for(jobs, len(documents) // 1000)
    bounds = np.linspace(0, len(documents), slices + 1).astype(int)

    def count(span) -> sp.csr_matrix:
        part = documents[span[0]:span[1]]
        lengths = np.fromiter(map(len, part), dtype=np.int64, count=len(part))
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        buf = np.frombuffer("".join(part).lower().encode("ascii"), dtype=np.uint8)
        indptr, indices, counts = kernels.compiled_call(
            ("hash",), lambda: compiled.hash_ascii(buf, offsets, spec.ngrams[0], spec.ngrams[1],
                                                   spec.buckets))
        return sp.csr_matrix((counts, indices, indptr), shape=(len(part), spec.buckets))

    spans = list(zip(bounds[:-1], bounds[1:], strict=True))
    if len(spans) == 1:
        return count(spans[0])
    return stack_rows(on_threads(count, spans, min(jobs, len(spans))))


def _vectorizer(spec: TextSpec):
    """scikit-learn's HashingVectorizer with ``spec``'s settings, counting (no norm, no
    alternating signs): the reference the compiled path equals."""
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(n_features=spec.buckets, ngram_range=spec.ngrams,
                             alternate_sign=False, norm=None, dtype=np.float64)


def _hash_other(spec: TextSpec, documents: list[str], jobs: int) -> sp.csr_matrix:
    """Documents with non-ASCII characters, by HashingVectorizer (Unicode rules for words and
    lower case); in ``jobs`` processes when there are many (it tokenises in Python)."""
    if jobs == 1 or len(documents) < _PARALLEL_ROWS:
        return sp.csr_matrix(_vectorizer(spec).transform(documents))
    from .processes import Task, run_in_processes

    bounds = np.linspace(0, len(documents), jobs + 1).astype(int)
    tasks = [Task(f"hash-{i}", _hash_other, (spec, documents[a:b], 1))
             for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)) if b > a]
    parts: dict[str, sp.csr_matrix] = {}

    def on_event(task, what, result):
        if what == "done":
            parts[task.name] = result

    run_in_processes(tasks, len(tasks), on_event)
    return stack_rows([parts[task.name] for task in tasks])


# ---- fastText's format --------------------------------------------------------------------

def fasttext_spec(text: TextSpec | None) -> TextSpec:
    """How a fastText file's ``text`` column is hashed: ``text``'s settings (default ones if
    None) on that column."""
    return TextSpec((FASTTEXT_TEXT,)) if text is None else replace(text,
                                                                   columns=(FASTTEXT_TEXT,))


def _read_lines(handle, chunk_rows: int, path: Path) -> list[bytes]:
    """About ``chunk_rows`` lines of a fastText file; a compressed file cut short or damaged
    is a one-line error."""
    try:
        return handle.readlines(max(1, chunk_rows) * 256)
    except Exception as exc:
        raise_read_failure(path, exc)


def _utf8_line(line: bytes, number: int, path: Path) -> str:
    """Line ``number`` of a fastText file as text (UTF-8, as fastText reads; the first may
    start with a byte-order mark)."""
    try:
        return line.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: line {number:,} is not UTF-8 text (byte "
                        f"0x{line[exc.start]:02x}): fastText files are UTF-8; save it as "
                        "UTF-8") from None


def is_fasttext(path: Path) -> bool:
    """A file (compressed or not) whose first non-empty line starts with ``__label__``."""
    try:
        with open_text(path, "utf-8", errors="replace") as handle:
            for line in handle:
                if line.strip():
                    return line.lstrip().startswith(FASTTEXT_LABEL)
                break
    except (OSError, EOFError, ValueError, DataError):  # unreadable, damaged, an archive of
        return False  # several files: its reader says so
    return False


def _fasttext_lines(lines, first: int, path) -> tuple[list[str], list[str], int]:
    """(texts, labels, lines with several labels) of fastText lines numbered from ``first``:
    a line with several labels keeps its first (xent trains one class a row), a line without
    a label is an error naming it, blank lines are skipped."""
    texts, labels, unlabelled, several = [], [], [], 0
    for number, line in enumerate(lines, start=first):
        head, _, rest = line.strip().partition(" ")
        if head.startswith(FASTTEXT_LABEL) and FASTTEXT_LABEL not in rest:
            labels.append(head[len(FASTTEXT_LABEL):])  # the usual line: one label, first
            texts.append(rest)
            continue
        words = line.split()
        if not words:
            continue
        tags = [w for w in words if w.startswith(FASTTEXT_LABEL)]
        if not tags:
            unlabelled.append(number)
            continue
        labels.append(tags[0][len(FASTTEXT_LABEL):])
        texts.append(" ".join(w for w in words if not w.startswith(FASTTEXT_LABEL)))
        several += len(tags) > 1
    if unlabelled:
        raise DataError(f"{path}: line(s) {unlabelled[:5]} have no {FASTTEXT_LABEL}NAME label; "
                        "label them or remove them")
    return texts, labels, several


def _fasttext_blocks(path: Path, chunk_rows: int, digest=None):
    """(texts, labels, lines with several labels) of a fastText file's lines, about
    ``chunk_rows`` lines at a time, so that no more than a block is in memory; ``digest``
    (hashlib) sees every byte."""
    number = 1
    with open_bytes(path, digest) as handle:
        while True:
            raw = _read_lines(handle, chunk_rows, path)
            if not raw:
                return
            lines = [_utf8_line(line, number + i, path) for i, line in enumerate(raw)]
            texts, labels, several = _fasttext_lines(lines, number, path)
            number += len(raw)
            if labels:
                yield texts, labels, several


#: a fastText chunk's ``DataFrame.attrs`` key: how many of its lines had several labels
SEVERAL_LABELS = "xent_several_labels"


def fasttext_chunks(path: Path, chunk_rows: int, digest=None):
    """A fastText file as DataFrames (``text``, ``label``) of at most about ``chunk_rows``
    lines, so that no more than a chunk is in memory; ``digest`` (hashlib) sees every byte.
    Each chunk's ``attrs[SEVERAL_LABELS]`` counts its lines with several labels."""
    import pandas as pd

    for texts, labels, several in _fasttext_blocks(path, chunk_rows, digest):
        frame = pd.DataFrame({FASTTEXT_TEXT: texts, FASTTEXT_TARGET: labels})
        frame.attrs[SEVERAL_LABELS] = several
        yield frame


def hash_fasttext(path: Path, spec: TextSpec, jobs: int | None = None,
                  block_rows: int = FASTTEXT_BLOCK_LINES
                  ) -> tuple[list[str], sp.csr_matrix, int]:
    """(labels, the hashed texts (n_documents, spec.buckets) CSR, the lines with several
    labels) of a fastText file, read and hashed ``block_rows`` lines at a time: only the CSR
    and one block's strings are in memory."""
    labels: list[str] = []
    parts = []
    several = 0
    for texts, block_labels, block_several in _fasttext_blocks(path, block_rows):
        parts.append(spec.hash_documents(texts, _jobs(jobs)))
        labels.extend(block_labels)
        several += block_several
    if not labels:
        raise DataError(f"{path}: the file has no documents")
    return labels, stack_rows(parts), several


def several_labels_notes(name: str, several: int, n_rows: int) -> tuple[str, ...]:
    """The note for a fastText file with lines of several labels (none if it has none)."""
    if not several:
        return ()
    return (f"{name}: lines with several labels: {several:,} of {n_rows:,}; xent trains one "
            "class a row and keeps each line's first (fastText trains on all of them), so its "
            "accuracy asks for that label, not any of a line's",)


def stack_rows(parts: list[sp.csr_matrix]) -> sp.csr_matrix:
    """``sp.vstack(parts)`` as CSR, releasing each part once it is copied (``parts`` is
    emptied), so that the peak is the result plus one part, not twice the result."""
    if len(parts) == 1:
        return sp.csr_matrix(parts.pop())
    nnz = sum(part.nnz for part in parts)
    rows = sum(part.shape[0] for part in parts)
    data = np.empty(nnz, np.float64)
    indices = np.empty(nnz, np.int32)
    indptr = np.zeros(rows + 1, np.int64)
    n_columns = parts[0].shape[1] if parts else 0
    row = at = 0
    while parts:
        part = parts.pop(0)
        data[at:at + part.nnz] = part.data[:part.nnz]  # scipy allows longer arrays
        indices[at:at + part.nnz] = part.indices[:part.nnz]
        indptr[row + 1:row + 1 + part.shape[0]] = part.indptr[1:] + at
        row, at = row + part.shape[0], at + part.nnz
    return sp.csr_matrix((data, indices, indptr), shape=(rows, n_columns))


# ---- a synthetic corpus, for tests and benchmarks -----------------------------------------

def topic_corpus(n_docs: int, vocab: int = 50_000, n_classes: int = 20, seed: int = 0,
                 own: float = 0.2, lengths: tuple[int, int] = (20, 50)):
    """(documents, labels (n_docs,)) of a seeded topic corpus: each document has a uniform
    class and a uniform length in ``lengths``; each of its tokens comes with probability
    ``own`` from its class's Zipf(1.1) distribution over a class-specific permutation of the
    vocabulary, else from a Zipf(1.0) over the vocabulary in its own order. Words are
    ``w<index>``."""
    rng = np.random.default_rng(seed)

    def zipf_cdf(exponent):
        p = np.arange(1, vocab + 1, dtype=np.float64) ** -exponent
        return np.cumsum(p / p.sum())

    class_cdf, global_cdf = zipf_cdf(1.1), zipf_cdf(1.0)
    permutations = np.stack([rng.permutation(vocab) for _ in range(n_classes)])
    labels = rng.integers(0, n_classes, n_docs)
    counts = rng.integers(lengths[0], lengths[1] + 1, n_docs)
    doc_of = np.repeat(np.arange(n_docs), counts)
    mine = rng.random(len(doc_of)) < own
    own_rank = np.minimum(np.searchsorted(class_cdf, rng.random(len(doc_of))), vocab - 1)
    any_rank = np.minimum(np.searchsorted(global_cdf, rng.random(len(doc_of))), vocab - 1)
    words = np.where(mine, permutations[labels[doc_of], own_rank], any_rank)
    tokens = np.array([f"w{i}" for i in range(vocab)], dtype=object)[words]
    bounds = np.concatenate([[0], np.cumsum(counts)])
    documents = [" ".join(tokens[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return documents, labels
