"""Key metrics of a notebook run, recorded for `labkit run` and `labkit sweep`.

A notebook ends with `labkit.report.record(accuracy=0.972, sparsity=0.9, ...)`. The values are
displayed in the cell (text/plain, so nbval compares them) and stored in the executed notebook
under the MIME type below. `labkit run` reads them back and writes reports/<name>.json beside the
report; `labkit sweep` collects them from every run into one table. Nothing is written while the
notebook runs, so an interrupted run leaves no metrics file behind.
"""
from __future__ import annotations

import math
import numbers

from IPython.display import display

from ..validate import message
from ._args import check_notebook

MIME = "application/vnd.labkit.metrics+json"


def record(**metrics) -> dict:
    """Display and store `metrics` (numbers, strings or bools) as this run's key results."""
    clean = {}
    for name, value in metrics.items():
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            value = int(value)
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(message(name, "record", "a finite number (a metric)", value))
        elif not isinstance(value, (str, bool)):
            raise TypeError(message(name, "record", "a number, str or bool (a metric)", type(value).__name__))
        clean[name] = value
    text = "metrics: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in clean.items())
    display({MIME: clean, "text/plain": text}, raw=True)
    return clean


def read(nb) -> dict:
    """The metrics recorded in an executed notebook (merged in order), {} if none."""
    check_notebook(nb, "nb", "read")
    found = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if MIME in out.get("data", {}):
                found.update(out["data"][MIME])
    return found
