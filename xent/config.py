"""Settings: the defaults (frozen dataclasses, one commented line per setting), TOML files,
``section.key=value`` overrides, and validation.

TOML has no null, so "not set" is spelled in-band: ``target = ""`` (the last column),
``batch_size = 0`` (full batch), ``patience = 0`` (no early stopping), ``impute = "none"``.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError


def _setting(default, help: str, choices=None, minimum=None, maximum=None, types=None):
    return field(
        default=default,
        metadata={"help": help, "choices": choices, "min": minimum, "max": maximum,
                  "types": types},
    )


#: the settings text data get unless a file, --set or an option gives them (``api``'s
#: ``with_implied_defaults``): one pass of SGD per row, lazily (only the weights of a
#: document's n-grams move), 5 epochs at the step 1/L decaying as 1/(1 + epoch), and a penalty
#: weak enough for a vocabulary's rare words to count; on the bench corpus
#: (bench/bench_text.py) these reach scikit-learn saga's accuracy in less time
TEXT_DEFAULTS = {"optim.optimizer": "gd", "optim.batch_size": 1, "optim.epochs": 5,
                 "optim.lr_decay": 1.0, "model.l2": 1e-7}


@dataclass(frozen=True)
class DataConfig:
    source: str = _setting("", "CSV path, LIBSVM path, or sklearn:NAME")
    target: str = _setting("", "label column of a CSV; empty means the last column")
    weight: str = _setting("", "column of per-row sample weights; empty means none")
    val_fraction: float = _setting(0.2, "fraction held out for validation (stratified, the "
                                   "same rows for every source)",
                                   minimum=0.0, maximum=0.99)
    seed: int = _setting(0, "seed of the split, shuffles and anything random", minimum=0)
    standardize: bool = _setting(True, "standardise features on the training part")
    impute: str = _setting("none", "missing values: none (an error), mean, median or drop",
                           choices=("none", "mean", "median", "drop"))
    dtype: str = _setting("float64", "feature dtype in memory; sums are float64 either way",
                          choices=("float64", "float32"))
    sep: str = _setting("", "CSV delimiter; empty: sniffed from the first lines (.tsv: tab)")
    na_values: str = _setting("", "comma-separated strings that mean a missing value, "
                              "besides empty, NA and NaN (e.g. \"?,n/a\")")
    thousands: str = _setting("", "thousands separator inside numbers (e.g. \",\"); empty: "
                              "none")
    ignore: str = _setting("", "comma-separated columns left out of the features (an "
                           "identifier, a written row index, a leak); empty: none")
    no_header: bool = _setting(False, "the CSV has no header row: its columns are named c1, "
                               "c2, ... (the label is the last unless --target names one); "
                               "a model keeps this for the files it predicts")
    encoding: str = _setting("utf-8", "text encoding of the CSV (Python's codec names: "
                             "utf-8, with or without a byte-order mark; cp1252, latin-1, "
                             "shift_jis, ...)")
    decimal: str = _setting(".", "decimal mark inside numbers: \".\" or \",\" (3,14 for pi, as "
                            "in many European files)", choices=(".", ","))
    libsvm_base: str = _setting("auto", "LIBSVM feature indices: zero, one, or auto (zero if "
                                "an index 0 appears)", choices=("auto", "zero", "one"))
    labels: str = _setting("", "a .npy of labels for a .npy of features; empty: the last "
                           "column")
    text: str = _setting("", "comma-separated columns of free text, hashed into word n-gram "
                         "counts (a fastText file's text needs no naming); unless given "
                         "otherwise, text trains with " + ", ".join(
                             f"{k.split('.')[1]} {v:g}" if isinstance(v, float) else
                             f"{k.split('.')[1]} {v}" for k, v in TEXT_DEFAULTS.items()))
    ngrams: str = _setting("1", "text: the word n-grams hashed, N or N-M (1-2: words and "
                           "word pairs)")
    buckets: int = _setting(1 << 18, "text: hash buckets (features) per text column",
                            minimum=16, maximum=1 << 26)
    text_norm: str = _setting("none", "text: n-gram counts as they are (none), or each text "
                              "column's counts scaled to unit length (l2)",
                              choices=("none", "l2"))
    tfidf: bool = _setting(False, "text: counts times each n-gram's inverse document frequency "
                           "over the training rows (with text_norm none)")
    stream: bool = _setting(False, "parse the file once into a cache and stream it in blocks")
    chunk_rows: int = _setting(65536, "rows per block when streaming", minimum=64)
    engine: str = _setting("local", "local, or dask (partitions on a Dask cluster)",
                           choices=("local", "dask"))


@dataclass(frozen=True)
class ModelConfig:
    link: str = _setting("auto", "auto (sigmoid for 2 classes), sigmoid or softmax",
                         choices=("auto", "sigmoid", "softmax"))
    l2: float = _setting(1e-4, "penalty l2/2 ||W||^2; scikit-learn's C = 1/(l2 n)", minimum=0.0)
    l1: float = _setting(0.0, "penalty l1 ||W||_1 (exact zeros; full batch: lbfgs, nesterov or "
                         "gd; mini-batch: gd, cumulative penalty); scikit-learn's C = 1/(l1 n)",
                         minimum=0.0)
    label_smoothing: float = _setting(0.0, "train on (1-eps) onehot + eps/K", minimum=0.0,
                                      maximum=0.99)
    class_weight: str = _setting("none", "none, or balanced (n / (K * class count))",
                                 choices=("none", "balanced"))
    fit_intercept: bool = _setting(True, "learn a bias b")


@dataclass(frozen=True)
class OptimConfig:
    # nesterov: still the gradient X^T(Q - P) and nothing else, but it converges (tol 1e-6)
    # on every built-in set within the 5000 epochs, where plain gd needs ~10x more
    optimizer: str = _setting("nesterov", "gd, momentum, nesterov, adagrad, adam or lbfgs",
                              choices=("gd", "momentum", "nesterov", "adagrad", "adam",
                                       "lbfgs"))
    lr: Any = _setting("auto", "step size, or auto (1/L; 0.1 for adagrad, 0.01 for adam)",
                       types=(float, str))
    lr_decay: float = _setting(0.0, "mini-batch: epoch e (from 0) steps at lr / (1 + "
                               "lr_decay e)", minimum=0.0)
    epochs: int = _setting(5000, "maximum epochs (iterations for full batch)", minimum=0)
    batch_size: int = _setting(0, "mini-batch rows; 0 is full batch", minimum=0)
    tol: float = _setting(1e-6, "stop when ||g|| / ||g0|| < tol", minimum=0.0)
    threads: int = _setting(0, "threads for each loss and gradient; 0: every core this "
                               "process may use (or $XENT_THREADS)", minimum=0)
    patience: int = _setting(0, "early stop after this many epochs without a better "
                                "validation loss; 0 is off", minimum=0)
    lr_backoff: bool = _setting(False, "on divergence, halve lr and go on from the last "
                                       "finite point")
    device: str = _setting("cpu", "where each loss and gradient is computed: cpu, or cuda "
                           "(CuPy on the first GPU; features there in float32 unless "
                           "data.dtype is set)", choices=("cpu", "cuda"))
    tf32: bool = _setting(False, "cuda: let float32 products use TF32 (faster, ~1e-3 "
                          "relative products)")


@dataclass(frozen=True)
class PathConfig:
    # read by `xent path` only: the penalty lambda splits as l1 = alpha lambda and
    # l2 = (1 - alpha) lambda, which replace model.l1 and model.l2 along the path
    l1_ratio: float = _setting(1.0, "xent path: alpha, the L1 share of the penalty lambda "
                               "(1 lasso, 0 ridge; glmnet's alpha)", minimum=0.0, maximum=1.0)
    n_lambdas: int = _setting(50, "xent path: lambdas on the grid, geometric down from "
                              "lambda_max", minimum=2)
    lambda_min_ratio: float = _setting(1e-4, "xent path: the smallest lambda over lambda_max",
                                       minimum=1e-12, maximum=0.99)
    folds: int = _setting(5, "xent path: cross-validation folds (stratified, drawn from "
                          "data.seed)", minimum=2)
    optimizer: str = _setting("lbfgs", "xent path: the optimiser of every fit on the path and "
                              "of the refit (replaces optim.optimizer): lbfgs, nesterov or gd",
                              choices=("lbfgs", "nesterov", "gd"))
    tol: float = _setting(1e-3, "xent path: ||g|| / ||g0|| at which each fit on the path "
                          "stops (a CV curve needs less than the refit, which uses optim.tol)",
                          minimum=0.0)
    select: str = _setting("1se", "xent path: the lambda refitted on all rows: 1se (the largest "
                           "within one SE of the least CV loss) or min", choices=("1se", "min"))


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    path: PathConfig = field(default_factory=PathConfig)

    def to_dict(self) -> dict:
        return {s.name: {f.name: getattr(getattr(self, s.name), f.name)
                         for f in fields(getattr(self, s.name))} for s in fields(self)}

    def get(self, dotted: str):
        section, key = dotted.split(".", 1)
        return getattr(getattr(self, section), key)


SECTIONS = {f.name: f.default_factory for f in fields(Config)}


def all_keys() -> list[str]:
    return [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in fields(cls)]


def keys_set(config: Config) -> set[str]:
    """The keys whose value in ``config`` is not the default (what a file set, as far as can
    be told: a file that sets a key to its default value is not told apart)."""
    defaults = Config()
    return {key for key in all_keys() if config.get(key) != defaults.get(key)}


def setting_field(dotted: str):
    """The dataclass field of setting "section.key": its default and, in ``metadata``, its
    help, choices and range."""
    section, key = dotted.split(".", 1)
    return {f.name: f for f in fields(SECTIONS[section])}[key]


def _unknown(key: str, where: str) -> ConfigError:
    known = all_keys()
    bare = {k.split(".", 1)[1]: k for k in known}
    close = difflib.get_close_matches(key, known, n=1) or [
        bare[m] for m in difflib.get_close_matches(key.split(".")[-1], list(bare), n=1)
    ]
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
    return ConfigError(f"{where}: unknown setting {key!r}{hint}")


#: a setting's type, as its error says it
_TYPE_WORDS = {int: "a whole number", float: "a number", str: "a string", bool: "true or false"}


def check_value(dotted: str, value, where: str = "config"):
    """The value of setting ``dotted`` checked against its type, choices and range; integral
    floats are accepted for ints and ints for floats. Returns the value, converted."""
    meta = setting_field(dotted)
    default = meta.default
    spec = meta.metadata
    allowed = spec["types"] or (type(default),)
    value_ok = False
    if isinstance(value, bool) or bool in allowed:
        value_ok = isinstance(value, bool) and bool in allowed
    elif float in allowed and isinstance(value, int | float):
        value, value_ok = float(value), True
    elif int in allowed and isinstance(value, float) and value.is_integer():
        value, value_ok = int(value), True
    else:
        value_ok = isinstance(value, allowed)
    if not value_ok:
        names = " or ".join(_TYPE_WORDS.get(t, t.__name__) for t in allowed)
        raise ConfigError(f"{where}: {dotted} must be {names}, got {value!r}")
    if dotted == "optim.lr" and isinstance(value, str) and value != "auto":
        raise ConfigError(f"{where}: optim.lr must be a positive number or 'auto', got {value!r}")
    if spec["choices"] and value not in spec["choices"]:
        raise ConfigError(
            f"{where}: {dotted} must be one of {', '.join(spec['choices'])}, got {value!r}"
        )
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: {dotted} must be finite, got {value!r}")
        low, high = spec["min"], spec["max"]
        if (low is not None and value < low) or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"between {low} and {high}"
            raise ConfigError(f"{where}: {dotted} must be {bounds}, got {value!r}")
        if dotted == "optim.lr" and value <= 0:
            raise ConfigError(f"{where}: optim.lr must be > 0 or 'auto', got {value!r}")
    return value


def from_mapping(mapping: dict, where: str = "config", base: Config | None = None) -> Config:
    """A Config from nested ``{section: {key: value}}``, starting from ``base`` (defaults)."""
    config = base or Config()
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where}: expected a table of sections")
    for section, values in mapping.items():
        if not isinstance(values, dict):
            raise _unknown(section, where)
        if section not in SECTIONS:
            raise ConfigError(
                f"{where}: unknown section [{section}]; the sections are {', '.join(SECTIONS)}"
            )
        updates = {}
        for key, value in values.items():
            dotted = f"{section}.{key}"
            if dotted not in all_keys():
                raise _unknown(dotted, where)
            updates[key] = check_value(dotted, value, where)
        config = replace(config, **{section: replace(getattr(config, section), **updates)})
    return config


def parse_value(text: str):
    """A ``--set`` value: TOML syntax where it parses (numbers, true/false, "strings"), else
    the bare text as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def with_overrides(config: Config, overrides: dict[str, Any], where: str = "--set") -> Config:
    """``config`` with ``{"section.key": value}`` replaced, each value checked."""
    nested: dict[str, dict] = {}
    for dotted, value in overrides.items():
        if "." not in dotted or dotted not in all_keys():
            raise _unknown(dotted, where)
        section, key = dotted.split(".", 1)
        nested.setdefault(section, {})[key] = value
    return from_mapping(nested, where, base=config)


def load_toml(path: str | Path, _seen: tuple = (), *, sweep: bool = False) -> Config:
    """A Config from a TOML file; ``extends = "base.toml"`` (relative to the file) starts from
    another file's settings. A ``[sweep]`` table is for ``xent sweep`` (``sweep`` True): for a
    single run it is an error, not silently ignored (a base file's table is ignored)."""
    path = Path(path)
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: 'extends' makes a cycle")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc})") from None
    try:
        mapping = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error: {exc}") from None
    base = None
    extends = mapping.pop("extends", None)
    if extends is not None:
        if not isinstance(extends, str):
            raise ConfigError(f"{path}: extends must be a file name (a string)")
        base_path = path.parent / extends
        if not base_path.is_file():
            raise ConfigError(f"{path}: extends {extends!r}, but there is no such config file "
                              f"({base_path})")
        base = load_toml(base_path, _seen + (path.resolve(),))
    if "sweep" in mapping and not (sweep or _seen):
        raise ConfigError(f"{path}: has a [sweep] table, which a single run would ignore: run "
                          f"it with `xent sweep {path}`, or remove the table")
    mapping.pop("sweep", None)  # read by the sweep command, not by a single run
    source = mapping.get("data", {}).get("source") if isinstance(mapping.get("data"), dict) \
        else None
    if isinstance(source, str) and source and not source.startswith("sklearn:"):
        # a data path in a config file is relative to the file, so configs run from anywhere
        mapping["data"]["source"] = str((path.parent / source).resolve())
    return from_mapping(mapping, str(path), base)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def to_toml(config: Config) -> str:
    """The resolved settings as TOML, each with its help as a comment; ``load_toml`` of this
    text gives back ``config``."""
    lines = []
    for section, cls in SECTIONS.items():
        lines.append(f"[{section}]")
        for f in fields(cls):
            value = getattr(getattr(config, section), f.name)
            lines.append(f"{f.name} = {_toml_value(value)}  # {f.metadata['help']}")
        lines.append("")
    return "\n".join(lines)
