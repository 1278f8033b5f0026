"""Entry checks of the workbook modules' arguments, in labkit.validate's one message form.

    The 'parameters' parameter of run_notebook must be a dict {name: value}. Got 'x' instead.

A wrong type raises TypeError, a wrong value ValueError, a path that does not exist
FileNotFoundError (its message names the path). The module is private: the test of bad input
(tests/test_bad_input.py) calls the public functions that use these checks, not the checks.
"""
from __future__ import annotations

import numbers
import os
from pathlib import Path

from ..validate import check_path, message  # check_path: one path check for the package


def shown(value):
    """What a message shows of a wrong-typed value: a plain scalar or short str itself, else its type."""
    if value is None or isinstance(value, (bool, numbers.Number)):
        return value
    if isinstance(value, str) and len(value) <= 80:
        return value
    return type(value).__name__


def check_str(value, name: str, func: str, empty: bool = True) -> str:
    """Return `value` if it is a str (a non-empty one unless `empty`), else raise."""
    if not isinstance(value, str):
        raise TypeError(message(name, func, "a str", shown(value)))
    if not empty and not value:
        raise ValueError(message(name, func, "a non-empty str", value))
    return value


def check_folder(value, name: str, func: str, exists: bool = True) -> Path:
    """check_path for a folder: if `exists`, an existing folder (else FileNotFoundError naming
    it); if not, a folder to create. Either way an existing file is a ValueError."""
    path = check_path(value, name, func, exists=exists)
    if path.exists() and not path.is_dir():
        raise ValueError(message(name, func, "a folder", str(value)))
    return path


def check_dict(value, name: str, func: str, allowed: str = "a dict {name: value}", values=None) -> dict:
    """Return `value` if it is a dict with str keys (and, if `values` is given, values of that type)."""
    if not isinstance(value, dict):
        raise TypeError(message(name, func, allowed, shown(value)))
    for k, v in value.items():
        if not isinstance(k, str):
            raise TypeError(message(name, func, f"{allowed} with str keys", f"key {k!r}"))
        if values is not None and not isinstance(v, values):
            raise TypeError(message(name, func, allowed, f"{k!r}: {shown(v)!r}"))
    return value


def check_strs(value, name: str, func: str, allowed: str = "a list of strs") -> list[str]:
    """Return `value` as a list if it is a list or tuple of strs, else raise TypeError."""
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise TypeError(message(name, func, allowed, shown(value)))
    return list(value)


def check_notebook(value, name: str, func: str):
    """Return `value` if it is a notebook: a dict (an nbformat NotebookNode) with a list of cells."""
    if not isinstance(value, dict) or not isinstance(value.get("cells"), list):
        raise TypeError(message(name, func, "a notebook (an nbformat NotebookNode, as nbformat.read "
                                "returns)", shown(value)))
    return value


def check_table(value, name: str, func: str, columns=()):
    """Return `value` if it is a pandas DataFrame holding `columns`, else raise."""
    import pandas as pd

    if not isinstance(value, pd.DataFrame):
        raise TypeError(message(name, func, "a pandas DataFrame", shown(value)))
    missing = [c for c in columns if c not in value.columns]
    if missing:
        raise ValueError(message(name, func, "a DataFrame with the columns " + ", ".join(map(repr, columns)),
                                 f"columns {list(value.columns)}"))
    return value
