"""Small matplotlib helpers shared by the notebooks (each returns the Figure it drew)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from ..validate import check_int, message, prunable_layers
from ._args import check_dict, check_str, shown


_NUMBERS = "a non-empty sequence of numbers (a list, an array, a tensor or a pandas Series)"


def _sequence(value, name: str, func: str, allowed: str = _NUMBERS):
    """`value` if it is a sized, non-str sequence with at least one entry, else raise."""
    sequence = hasattr(value, "__len__") and hasattr(value, "__getitem__")
    if isinstance(value, (str, bytes, dict)) or not sequence:
        raise TypeError(message(name, func, allowed, shown(value)))
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim != 1:
        raise ValueError(message(name, func, allowed, f"shape {tuple(value.shape)}"))
    if len(value) == 0:
        raise ValueError(message(name, func, allowed, "an empty sequence"))
    return value


def _array(value, name: str, func: str, allowed: str, ndims) -> np.ndarray:
    """`value` (a tensor or an array of finite numbers with `ndims` dimensions) as a numpy array."""
    if not isinstance(value, (torch.Tensor, np.ndarray)):
        raise TypeError(message(name, func, allowed, shown(value)))
    a = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
    if a.ndim not in ndims or a.size == 0:
        raise ValueError(message(name, func, allowed, f"shape {tuple(a.shape)}"))
    if not np.issubdtype(a.dtype, np.number) or not np.isfinite(a).all():
        raise ValueError(message(name, func, allowed, "non-finite or non-numeric values"))
    return a


def weight_histograms(model: nn.Module, tau: float | None = None, bins: int = 80, log: bool = True):
    """One histogram per prunable layer of its (effective) weights, ±τ marked when given.

    Exact zeros (already pruned) are left out of the histogram and counted in the title.
    """
    layers = prunable_layers(model, "model", "weight_histograms")
    fig, axes = plt.subplots(1, len(layers), figsize=(3.6 * len(layers), 2.8), squeeze=False)
    for ax, (name, layer) in zip(axes[0], layers):
        w = layer.weight.detach().cpu().numpy().ravel()
        nz = w[w != 0]
        ax.hist(nz, bins=bins, color="tab:blue", log=log)
        if tau is not None:
            for x in (-tau, tau):
                ax.axvline(x, color="tab:red", linestyle="--", linewidth=1)
        ax.set_title(f"{name}: {w.size:,} weights, {w.size - nz.size:,} zero", fontsize=9)
        ax.set_xlabel("w")
    fig.tight_layout()
    return fig


def curve(x, ys: dict, xlabel: str, ylabel: str, title: str = "", marker: str = "o", ax=None,
          errors: dict | None = None):
    """Lines y(x) for each label in `ys` (optional ± error bars in `errors`)."""
    func = "curve"
    _sequence(x, "x", func)
    check_dict(ys, "ys", func, "a dict {label: y values}")
    if not ys:
        raise ValueError(message("ys", func, "a non-empty dict {label: y values}", ys))
    for label, y in ys.items():
        _sequence(y, "ys", func, f"a dict of sequences as long as x ({len(x)})")
        if len(y) != len(x):
            raise ValueError(message("ys", func, f"a dict of sequences as long as x ({len(x)})",
                                     f"{label!r}: {len(y)} values"))
    check_str(xlabel, "xlabel", func)
    check_str(ylabel, "ylabel", func)
    check_str(title, "title", func)
    if errors is not None:
        check_dict(errors, "errors", func, "None or a dict {label: error values}")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.4))
    for label, y in ys.items():
        if errors and label in errors:
            ax.errorbar(x, y, yerr=errors[label], marker=marker, capsize=3, label=label)
        else:
            ax.plot(x, y, marker=marker, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if len(ys) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.figure.tight_layout()
    return ax.figure


def digits_grid(X, y, n: int = 10, title: str = ""):
    """The first `n` images of X (N, 1, H, W) with their labels."""
    func = "digits_grid"
    X = _array(X, "X", func, "a tensor or array of images (N, 1, H, W) or (N, H, W)", (3, 4))
    _sequence(y, "y", func, "the labels of X (a non-empty sequence of ints)")
    n = check_int(n, "n", func, low=1)
    if len(y) < min(n, len(X)):
        raise ValueError(message("y", func, f"the labels of X (at least {min(n, len(X))})",
                                 f"{len(y)} labels"))
    check_str(title, "title", func)
    fig, axes = plt.subplots(1, n, figsize=(1.1 * n, 1.5))
    for ax, img, label in zip(axes, X[:n], y[:n]):
        ax.imshow(np.asarray(img).squeeze(), cmap="gray_r")
        ax.set_title(str(int(label)), fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def confusion(C, ax=None):
    """A confusion matrix C[true, predicted] with its counts."""
    C = _array(C, "C", "confusion", "a square matrix of counts (a 2-D tensor or array)", (2,))
    if C.shape[0] != C.shape[1]:
        raise ValueError(message("C", "confusion", "a square matrix of counts (a 2-D tensor or array)",
                                 f"shape {C.shape}"))
    if ax is None:
        _, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.imshow(C, cmap="Blues")
    for (i, j), v in np.ndenumerate(C):
        ax.text(j, i, int(v), ha="center", va="center", fontsize=7,
                color="white" if v > C.max() / 2 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_xticks(range(len(C)))
    ax.set_yticks(range(len(C)))
    ax.figure.tight_layout()
    return ax.figure
