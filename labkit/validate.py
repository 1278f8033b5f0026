"""Entry checks for user input, with one message form (scikit-learn's).

    The 'amount' parameter of magnitude must be a float in the range [0, 1). Got 1.5 instead.

A wrong type raises TypeError, a value out of range raises ValueError; both name the
parameter, the function and what is allowed, so the user never sees a traceback from
deep inside torch. The value is shown with repr(): `Got 1.5`, `Got '1.5'` (a str), `Got True`.
A hand-written check builds its message with `message(name, func, allowed, value)`.

`per_layer` reads the "one value, or {layer name: value}" parameters of prune, structured,
ptq, lowrank and deep_compression.
"""
from __future__ import annotations

import math
import numbers
import os
from collections.abc import Collection
from pathlib import Path

import torch
from torch import nn


def _labels(name, func, helper: str) -> None:
    """The `name` and `func` that every check puts in its message must be strs."""
    for label, v in (("name", name), ("func", func)):
        if not isinstance(v, str):
            raise TypeError(f"The '{label}' parameter of {helper} must be a str. Got {v!r} instead.")


def accepts(**why):
    """Declare, beside a function, the kinds of bad-looking input it legitimately accepts, and why.

        @accepts(empty="the Huffman code of nothing is 0 bits")
        def huffman_bits(symbols): ...

    Kinds (tests/test_bad_input.py calls every public function with each): none (None),
    negative (-1), str ("x"), nan (float NaN), empty (an empty tensor), nan_tensor (a tensor
    holding NaN), list ([]), large (10**9). The function itself is returned unchanged.
    """
    unknown = set(why) - set(BAD_KINDS)
    if unknown:
        raise ValueError(message("why", "accepts", "keyword arguments among " + ", ".join(BAD_KINDS),
                                 sorted(unknown)))

    def mark(fn):
        fn.__labkit_accepts__ = {**getattr(fn, "__labkit_accepts__", {}), **why}
        return fn

    return mark


BAD_KINDS = ("none", "negative", "str", "nan", "empty", "nan_tensor", "list", "large")


@accepts(str="message only formats text: any str name, func and description make a message "
             "(and the value may be anything, it is shown with repr)")
def message(name: str, func: str, allowed: str, value) -> str:
    """The one message form: "The '<name>' parameter of <func> must be <allowed>. Got <repr(value)> instead."

    Pass the offending value itself (not its repr: the message takes the repr), or a short
    description of it such as `type(x).__name__` or `f"shape {tuple(x.shape)}"`."""
    _labels(name, func, "message")
    if not isinstance(allowed, str):
        raise TypeError(f"The 'allowed' parameter of message must be a str. Got {allowed!r} instead.")
    return f"The '{name}' parameter of {func} must be {allowed}. Got {value!r} instead."


def _interval(low, high, closed: str) -> str:
    left = "[" if closed in ("both", "left") else "("
    right = "]" if closed in ("both", "right") else ")"
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    return f"{left}{lo}, {hi}{right}"


def _in_range(value, low, high, closed: str) -> bool:
    if low is not None:
        if value < low or (value == low and closed not in ("both", "left")):
            return False
    if high is not None:
        if value > high or (value == high and closed not in ("both", "right")):
            return False
    return True


def check_float(value, name: str, func: str, low=None, high=None, closed: str = "both") -> float:
    """Return `value` as a float if it is a real number in the interval, else raise."""
    _labels(name, func, "check_float")
    allowed = f"a float in the range {_interval(low, high, closed)}"
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.dtype.is_complex:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(message(name, func, allowed, value))
    value = float(value)
    if math.isnan(value) or not _in_range(value, low, high, closed):
        raise ValueError(message(name, func, allowed, value))
    return value


def check_int(value, name: str, func: str, low=None, high=None) -> int:
    """Return `value` as an int if it is an integer in [low, high], else raise."""
    _labels(name, func, "check_int")
    allowed = f"an int in the range {_interval(low, high, 'both')}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(message(name, func, allowed, value))
    value = int(value)
    if not _in_range(value, low, high, "both"):
        raise ValueError(message(name, func, allowed, value))
    return value


def check_bits(value, name: str, func: str, low: int = 1, high: int = 32) -> int:
    """Return `value` as an int if it is a bit width in [low, high] (default 1 to 32), else raise."""
    _labels(name, func, "check_bits")
    return check_int(value, name, func, low=low, high=high)


def check_bool(value, name: str, func: str) -> bool:
    """Return `value` if it is True or False (not 0, 1, None or "yes"), else raise TypeError."""
    _labels(name, func, "check_bool")
    if not isinstance(value, bool):
        raise TypeError(message(name, func, "a bool", value))
    return value


def per_layer(value, names, check, name: str, func: str) -> dict:
    """{layer name: checked value} from a parameter that is one value for every layer, or a dict
    {layer name: value}.

    names: the layer names a dict may use (the function's layers, in order).
    check(v, name, func): checks one value and returns it, e.g.
      `functools.partial(check_float, low=0, high=1, closed="left")`; it sees every value.
    One value gives {n: value for n in names}. A dict key that is not in `names` raises a
    ValueError that lists the valid names. The rule for a missing layer, the same in every
    labkit function: a layer missing from the dict is missing from the result, and the function
    leaves that layer as it is (not pruned, not quantized, not factorized, not shared).
    """
    _labels(name, func, "per_layer")
    if isinstance(names, str) or not isinstance(names, Collection) or not all(isinstance(n, str) for n in names):
        raise TypeError(message("names", "per_layer", "a list of layer names (strs)", names))
    if not callable(check):
        raise TypeError(message("check", "per_layer", "a callable check(value, name, func)", check))
    names = list(names)
    if isinstance(value, dict):
        unknown = [k for k in value if k not in names]
        if unknown:
            raise ValueError(message(name, func, "one value or a dict keyed by layer names among "
                                     + ", ".join(repr(n) for n in names), sorted(unknown, key=str)))
        return {n: check(value[n], name, func) for n in names if n in value}
    value = check(value, name, func)
    return dict.fromkeys(names, value)


def check_choice(value, name: str, func: str, choices) -> str:
    """Return `value` if it is one of `choices`, else raise ValueError (TypeError if not a str)."""
    _labels(name, func, "check_choice")
    if isinstance(choices, (str, torch.Tensor)) or not isinstance(choices, Collection):
        raise TypeError(message("choices", "check_choice", "a tuple of the allowed values", choices))
    if not choices:
        raise ValueError(message("choices", "check_choice", "a non-empty tuple of the allowed values",
                                 choices))
    allowed = "one of " + ", ".join(repr(c) for c in choices)
    if not isinstance(value, str) and not any(value is c for c in choices):
        raise TypeError(message(name, func, allowed, value))
    if value not in choices:
        raise ValueError(message(name, func, allowed, value))
    return value


def check_tensor(value, name: str, func: str, floating: bool = True) -> torch.Tensor:
    """Return `value` if it is a torch.Tensor (floating point unless `floating=False`)."""
    _labels(name, func, "check_tensor")
    if not isinstance(value, torch.Tensor):
        raise TypeError(message(name, func, "a torch.Tensor", type(value).__name__))
    if floating and not value.is_floating_point():
        raise TypeError(message(name, func, "a floating-point torch.Tensor", f"dtype {value.dtype}"))
    return value


def check_finite(value, name: str, func: str) -> torch.Tensor:
    """Return `value` if it is a floating-point tensor with no NaN or ±Inf, else raise.

    For the functions where one NaN would silently poison the result (a min/max observer, a
    scale, a k-means codebook, a calibration range): ValueError, naming how many entries."""
    _labels(name, func, "check_finite")
    check_tensor(value, name, func)
    bad = value.numel() - int(torch.isfinite(value).sum())
    if bad:
        raise ValueError(message(name, func, "a tensor of finite values (no NaN or Inf)",
                                 f"{bad} NaN/Inf of {value.numel()} values"))
    return value


def check_path(value, name: str, func: str, exists: bool = True) -> Path:
    """Return `value` as a Path if it is a str or os.PathLike (and, if `exists`, names an existing
    file or folder); a wrong type raises TypeError, a missing path FileNotFoundError naming it."""
    _labels(name, func, "check_path")
    if not isinstance(value, (str, os.PathLike)) or (isinstance(value, str) and not value):
        raise TypeError(message(name, func, "a path (a non-empty str or os.PathLike)", value))
    path = Path(value)
    if exists and not path.exists():
        raise FileNotFoundError(message(name, func, "an existing path", str(value)))
    return path


def check_xy(X, y, func: str, x_name: str = "X", y_name: str = "y") -> None:
    """A labelled data set: X a floating-point tensor, y int64 class labels, as many (≥ 1) as X's rows."""
    for label, v in (("func", func), ("x_name", x_name), ("y_name", y_name)):
        if not isinstance(v, str):
            raise TypeError(message(label, "check_xy", "a str", v))
    if not isinstance(X, torch.Tensor) or not X.is_floating_point():
        raise TypeError(message(x_name, func, "a floating-point torch.Tensor", type(X).__name__))
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64:
        raise TypeError(message(y_name, func, "an int64 torch.Tensor of class labels",
                                 getattr(y, "dtype", type(y).__name__)))
    if len(X) != len(y) or len(y) == 0:
        raise ValueError(message(y_name, func, f"a non-empty tensor with as many rows as {x_name}",
                                  f"{len(y)} labels for {len(X)} samples"))


def check_module(value, name: str, func: str) -> nn.Module:
    _labels(name, func, "check_module")
    if not isinstance(value, nn.Module):
        raise TypeError(message(name, func, "a torch.nn.Module", type(value).__name__))
    return value


PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_layers(model: nn.Module, name: str, func: str) -> list[tuple[str, nn.Module]]:
    """The (name, layer) pairs whose `weight` labkit prunes: Linear and Conv layers.

    Raises ValueError if there are none, so that pruning a model never silently does nothing.
    """
    _labels(name, func, "prunable_layers")
    check_module(model, name, func)
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE)]
    if not layers:
        raise ValueError(message(name, func, "a model with at least one Linear or Conv layer",
                                  type(model).__name__))
    return layers

