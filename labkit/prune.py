"""Pruning: set unimportant weights to zero, and keep them there.

Threshold pruning (seed 001 §4.2): for a threshold τ ≥ 0,

    w′_ij = 0 if |w_ij| < τ else w_ij          (strict: a weight equal to τ is kept)

Seed 001 §4.3 applies this rule to W = [[1,2,0,3],[4,0,5,6],[7,8,0,9]] with τ = 2 and prints a
W′ that prunes the 4 and keeps the 1. The rule prunes the 1 (|1| < 2) and keeps the 4, so
W′ = [[0,2,0,3],[4,0,5,6],[7,8,0,9]] and the non-zeros go from 9 to 8 (ρ: 0.75 → 0.667),
not "from 12 to 9" (erratum 1).

The kernels (`threshold`) are pure: they return a new tensor and never touch their input.
The wrappers whose name ends in `_` change a model the way `torch.nn.utils.prune` does:
the original weight is kept as the parameter `weight_orig` (the same Parameter object, so an
optimizer that holds it keeps working), the mask is the buffer `weight_mask`, and `weight`
is recomputed as `weight_orig * weight_mask` before every forward pass. Pruned weights
therefore stay at zero through training. `remove_(model)` makes the pruning permanent.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from ._validate import check_float, check_module, check_tensor, prunable_layers


def threshold(w: torch.Tensor, tau: float) -> torch.Tensor:
    """A new tensor equal to `w` with every |w| < τ set to 0 (τ ≥ 0). `w` is not changed."""
    check_tensor(w, "w", "threshold")
    tau = check_float(tau, "tau", "threshold", low=0, high=None, closed="left")
    return w.masked_fill(w.abs() < tau, 0)


def threshold_mask(w: torch.Tensor, tau: float) -> torch.Tensor:
    """The keep-mask of threshold pruning: True where |w| ≥ τ (as a bool tensor)."""
    check_tensor(w, "w", "threshold_mask")
    tau = check_float(tau, "tau", "threshold_mask", low=0, high=None, closed="left")
    return w.abs() >= tau


def apply_masks_(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """Attach keep-masks {layer name: mask of the weight's shape} to a model, in place.

    Uses torch.nn.utils.prune's mechanism, so a second call multiplies the masks (the
    pruned set only grows) and `remove_` makes it permanent.
    """
    check_module(model, "model", "apply_masks_")
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        layer = modules[name]
        torch_prune.custom_from_mask(layer, "weight", mask.to(layer.weight.device))
    return model


def threshold_(model: nn.Module, tau: float) -> nn.Module:
    """Threshold-prune every Linear/Conv weight of `model` in place (|w| < τ → 0) with masks.

    Returns the model. Pruned weights stay zero in training; see `remove_`.
    """
    layers = prunable_layers(model, "model", "threshold_")
    tau = check_float(tau, "tau", "threshold_", low=0, high=None, closed="left")
    masks = {name: layer.weight.detach().abs() >= tau for name, layer in layers}
    return apply_masks_(model, masks)


def masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The current keep-masks {layer name: bool tensor} of a pruned model (empty if none)."""
    check_module(model, "model", "masks")
    return {name: m.weight_mask.detach().bool() for name, m in model.named_modules()
            if hasattr(m, "weight_mask")}


def remove_(model: nn.Module) -> nn.Module:
    """Make pruning permanent: drop masks and hooks, keep the zeros in `weight`. In place."""
    check_module(model, "model", "remove_")
    for m in model.modules():
        if torch_prune.is_pruned(m) and hasattr(m, "weight_mask"):
            torch_prune.remove(m, "weight")
    return model
