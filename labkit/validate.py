"""Entry checks for user input, with one message form (scikit-learn's).

    The 'amount' parameter of magnitude must be a float in the range [0, 1). Got 1.5 instead.

A wrong type raises TypeError, a value out of range raises ValueError; both name the
parameter, the function and what is allowed, so the user never sees a traceback from
deep inside torch.
"""
from __future__ import annotations

import math
import numbers

import torch
from torch import nn


def message(name: str, func: str, allowed: str, value) -> str:
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
    allowed = f"an int in the range {_interval(low, high, 'both')}"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(message(name, func, allowed, value))
    value = int(value)
    if not _in_range(value, low, high, "both"):
        raise ValueError(message(name, func, allowed, value))
    return value


def check_choice(value, name: str, func: str, choices) -> str:
    """Return `value` if it is one of `choices`, else raise ValueError (TypeError if not a str)."""
    allowed = "one of " + ", ".join(repr(c) for c in choices)
    if not isinstance(value, str) and not any(value is c for c in choices):
        raise TypeError(message(name, func, allowed, value))
    if value not in choices:
        raise ValueError(message(name, func, allowed, value))
    return value


def check_tensor(value, name: str, func: str, floating: bool = True) -> torch.Tensor:
    """Return `value` if it is a torch.Tensor (floating point unless `floating=False`)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(message(name, func, "a torch.Tensor", type(value).__name__))
    if floating and not value.is_floating_point():
        raise TypeError(message(name, func, "a floating-point torch.Tensor", f"dtype {value.dtype}"))
    return value


def check_module(value, name: str, func: str) -> nn.Module:
    if not isinstance(value, nn.Module):
        raise TypeError(message(name, func, "a torch.nn.Module", type(value).__name__))
    return value


PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def prunable_layers(model: nn.Module, name: str, func: str) -> list[tuple[str, nn.Module]]:
    """The (name, layer) pairs whose `weight` labkit prunes: Linear and Conv layers.

    Raises ValueError if there are none, so that pruning a model never silently does nothing.
    """
    check_module(model, name, func)
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, PRUNABLE)]
    if not layers:
        raise ValueError(message(name, func, "a model with at least one Linear or Conv layer",
                                  type(model).__name__))
    return layers
