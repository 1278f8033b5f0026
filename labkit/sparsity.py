"""Density ρ and sparsity 1 − ρ of a tensor or a model.

Seed 001 §4.1 defines, for a weight matrix W of shape (m, n),

    ρ = |{w_ij ≠ 0}| / (m · n)

and calls it "sparsity". It is the *density*: the fraction of weights that are still there.
labkit keeps both names apart (erratum 2, the first correction in notebook 01,
notebooks/01_sparsity_and_threshold_pruning.ipynb):

    density(x)  = ρ        (1.0 for a dense tensor)
    sparsity(x) = 1 − ρ    (0.9 after removing 90 % of the weights)

For a model, ρ is taken over the prunable weights only: the `weight` of every Linear and
Conv layer (biases and normalization parameters are not counted, as in Han et al. 2015).
"""
from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from .validate import accepts, message, prunable_layers


def _counts(x, func: str) -> tuple[int, int]:
    """(non-zeros, total) of a tensor, or summed over a model's prunable weights."""
    if isinstance(x, torch.Tensor):
        return int(torch.count_nonzero(x)), x.numel()
    if isinstance(x, nn.Module):
        nonzero = total = 0
        for _, layer in prunable_layers(x, "x", func):
            nonzero += int(torch.count_nonzero(layer.weight.detach()))
            total += layer.weight.numel()
        return nonzero, total
    raise TypeError(message("x", func, "a torch.Tensor or a torch.nn.Module", type(x).__name__))


@accepts(empty="an empty tensor has no weights to keep or remove: its density is defined as 1.0",
         nan_tensor="density counts zeros only: a NaN entry is a weight still there (non-zero), so ρ "
                    "is exact, also for a model whose training diverged")
def density(x) -> float:
    """ρ = non-zeros / total, for a tensor or for a model's prunable weights. In [0, 1].

    An empty tensor has no weights to keep or remove; its density is defined as 1.0.
    """
    nonzero, total = _counts(x, "density")
    return nonzero / total if total else 1.0


@accepts(empty="1 − density: an empty tensor's sparsity is defined as 0.0",
         nan_tensor="sparsity counts zeros only: a NaN entry is not a zero, so 1 − ρ is exact")
def sparsity(x) -> float:
    """1 − ρ: the measured fraction of zeros."""
    return 1.0 - density(x)


def report(model: nn.Module) -> pd.DataFrame:
    """One row per prunable layer and a final 'total' row.

    Columns: layer, type, shape, params, nonzero, density, sparsity.
    The weight seen is the effective one (`layer.weight`), so masks applied with
    `labkit.prune` or `torch.nn.utils.prune` are taken into account.
    """
    rows = []
    for name, layer in prunable_layers(model, "model", "report"):
        w = layer.weight.detach()
        nz = int(torch.count_nonzero(w))
        rows.append({"layer": name, "type": type(layer).__name__, "shape": tuple(w.shape),
                     "params": w.numel(), "nonzero": nz})
    total = sum(r["params"] for r in rows)
    nonzero = sum(r["nonzero"] for r in rows)
    rows.append({"layer": "total", "type": "", "shape": (), "params": total, "nonzero": nonzero})
    df = pd.DataFrame(rows)
    df["density"] = df["nonzero"] / df["params"]
    df["sparsity"] = 1.0 - df["density"]
    return df
