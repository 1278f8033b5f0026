"""Key metrics of a notebook run, recorded for `labkit run` and `labkit sweep`.

A notebook ends with `labkit.report.record(accuracy=0.972, sparsity=0.9, ...)`. The values are
displayed in the cell (text/plain, so nbval compares them) and stored in the executed notebook
under the MIME type below. `labkit run` reads them back and writes reports/<name>.json beside the
report; `labkit sweep` collects them from every run into one table. Nothing is written while the
notebook runs, so an interrupted run leaves no metrics file behind.

`recorded_names(path)` reads, without running it, which metrics a notebook records: the keyword
names of its `record(...)` calls (`labkit list` shows them, and whether a sweep of it draws a
Pareto front: `labkit.workbook.sweep.pareto_pairs`).
"""
from __future__ import annotations

import ast
import math
import numbers
from pathlib import Path

from IPython.display import display

from ..validate import message
from ._args import check_notebook, check_path

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


def recorded_names(path: Path) -> list[str]:
    """The metric names a notebook records, read from its source with `ast` (it is not run): the
    keyword names of every `record(...)` / `report.record(...)` call, in order, each once.

    `**mapping` keywords are not seen (their names are known only when the notebook runs); a
    cell that is not Python (a line magic, a shell escape) is read without those lines."""
    path = check_path(path, "path", "recorded_names")
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # noqa: BLE001 — any unreadable file is the same bad argument
        raise ValueError(message("path", "recorded_names", "a Jupyter notebook (.ipynb)", str(path))) from None
    names = []
    for cell in nb.cells:
        if cell.cell_type != "code" or "record" not in cell.source:
            continue
        source = "\n".join(line for line in cell.source.splitlines()
                           if not line.lstrip().startswith(("%", "!")))
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                called = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
                if called == "record":
                    names += [k.arg for k in node.keywords if k.arg and k.arg not in names]
    return names
