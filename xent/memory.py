"""Memory: how much of it the data may take before they are streamed (``memory_budget``), and
the check that the parameters, with what an optimiser keeps beside them, fit in the memory
available before any is made (``check_parameters``).

A data set past the budget is streamed (``api.route``); parameters past it are an error: a
fastText file of 30,000 labels hashed into 2^18 buckets makes W 262,145 x 30,000, 58.6 GiB,
whose allocation ended in a MemoryError traceback.
"""

from __future__ import annotations

import contextlib
import os

from .errors import DataError

#: copies of the parameters each optimiser keeps besides the parameters, their gradient, the
#: last finite point and the next one: its state (velocity, moments; L-BFGS's ten pairs of
#: steps and gradient changes and a few of its own)
OPTIMIZER_COPIES = {"gd": 0, "momentum": 1, "nesterov": 2, "adagrad": 1, "adam": 2,
                    "lbfgs": 24}
#: the parameters, their gradient, the last finite point, the next one
BASE_COPIES = 4


def available_memory() -> int:
    """Bytes of memory available now (Linux's MemAvailable; 8 GiB where it cannot be read)."""
    with contextlib.suppress(OSError, ValueError, IndexError), \
            open("/proc/meminfo", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 8 << 30


def memory_budget() -> int:
    """Bytes a data set may take in memory before training streams it: $XENT_MEMORY_BUDGET,
    else half of the memory available now (the rest for the parameters and the work)."""
    if os.environ.get("XENT_MEMORY_BUDGET"):
        return int(float(os.environ["XENT_MEMORY_BUDGET"]))
    return available_memory() // 2


def parameter_bytes(n_rows: int, n_outputs: int, working_rows: int, optimizer: str,
                    threads: int) -> int:
    """Bytes of float64 parameters (``n_rows`` = features + 1, ``n_outputs``) while training:
    the full array twice (the start and the result), and ``BASE_COPIES``, the optimiser's
    copies and one gradient buffer a thread of the ``working_rows`` training works on (fewer
    than ``n_rows`` where sparse rows are narrowed to their present columns)."""
    copies = BASE_COPIES + OPTIMIZER_COPIES.get(optimizer, 2) + threads
    return 8 * n_outputs * (2 * n_rows + copies * working_rows)


def check_parameters(n_rows: int, n_outputs: int, working_rows: int, optimizer: str,
                     threads: int) -> None:
    """A ``DataError`` that says what to change where training's parameters
    (``parameter_bytes``) would pass the memory available: checked before any is made."""
    needed, budget = parameter_bytes(n_rows, n_outputs, working_rows, optimizer, threads), \
        available_memory()
    if needed <= budget:
        return
    lighter = "" if optimizer == "gd" else ", --optimizer gd"
    raise DataError(
        f"the model would have {n_rows * n_outputs:,} parameters ({n_rows - 1:,} features "
        f"and the intercept, x {n_outputs:,} outputs), and training needs at least "
        f"{needed / 1e9:.3g} GB for them (twice, with the {optimizer} optimiser's copies and "
        f"a gradient buffer per thread), more than the {budget / 1e9:.3g} GB available: use "
        f"fewer features (--buckets for hashed text), fewer classes{lighter} or fewer "
        "--threads")
