"""Small matplotlib helpers shared by the notebooks (each returns the Figure it drew)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from torch import nn

from ..validate import prunable_layers


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
