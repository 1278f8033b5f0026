"""Pruning: set unimportant weights to zero, and keep them there.

Threshold pruning (seed 001 §4.2): for a threshold τ ≥ 0,

    w′_ij = 0 if |w_ij| < τ else w_ij          (strict: a weight equal to τ is kept)

Seed 001 §4.3 applies this rule to W = [[1,2,0,3],[4,0,5,6],[7,8,0,9]] with τ = 2 and prints a
W′ that prunes the 4 and keeps the 1. The rule prunes the 1 (|1| < 2) and keeps the 4, so
W′ = [[0,2,0,3],[4,0,5,6],[7,8,0,9]] and the non-zeros go from 9 to 8 (ρ: 0.75 → 0.667),
not "from 12 to 9" (erratum 1).

Magnitude pruning (Han et al. 2015, https://arxiv.org/abs/1506.02626) removes a fraction
`amount` of the weights instead of fixing τ: the k = round(amount · n) weights of smallest
score S are pruned (k rounded with Python's round(), as torch.nn.utils.prune does),

    per layer ("layer"):  k_l = round(amount · n_l) in every layer l
    global   ("global"):  k = round(amount · Σ_l n_l) over all layers together.

The score is |w| (magnitude), or any score S ≥ 0 of the weight's shape (`prune_by_scores_`).

The k-th smallest score over all layers is found without concatenating them (torch does, at
the cost of a copy of every weight): `labkit.selection`. Ties at the threshold are pruned in
layer order, then flat index order (torch's `topk` breaks them in an unspecified order; the kept
set is otherwise identical).

The kernels (`threshold`, `smallest_masks`, ...) are pure: they return new tensors. The
wrappers whose name ends in `_` change a model the way `torch.nn.utils.prune` does: the
original weight is kept as the parameter `weight_orig` (the same Parameter object, so an
optimizer that holds it keeps working), the mask is the buffer `weight_mask`, and `weight`
is recomputed as `weight_orig * weight_mask` before every forward pass. Pruned weights
therefore stay at zero through training. `remove_(model)` makes the pruning permanent.
`magnitude` (no trailing _) is the one copying wrapper: `magnitude_(clone(model), ...)`.

Other criteria, penalties and the proximal step: `labkit.criteria`.
"""
from __future__ import annotations

import copy
import functools

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils import prune as torch_prune

from .validate import (check_choice, check_float, check_module, check_tensor, message, per_layer,
                       prunable_layers)
from .selection import kth_smallest, n_to_prune, smallest_masks, zero_smallest_  # noqa: F401  (prune's API)

# ---------------------------------------------------------------- kernels (pure)
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


def magnitude_mask(w: torch.Tensor, amount: float) -> torch.Tensor:
    """Keep-mask (bool) of one tensor: prune the round(amount · n) smallest |w|."""
    check_tensor(w, "w", "magnitude_mask")
    return smallest_masks([w.detach()], amount, absolute=True)[0]


def global_masks(weights: list[torch.Tensor], amount: float) -> list[torch.Tensor]:
    """Keep-masks (bool) of global magnitude pruning: the round(amount · N) smallest |w| over all N
    weights of `weights` together are removed — one threshold for every tensor, the choice of
    torch.nn.utils.prune.global_unstructured with L1Unstructured. `magnitude_(scope="global")`
    applies it to a model."""
    if not isinstance(weights, (list, tuple)) or not weights:
        raise TypeError(message("weights", "global_masks", "a non-empty list of tensors", type(weights).__name__))
    for w in weights:
        check_tensor(w, "weights", "global_masks")
    amount = check_float(amount, "amount", "global_masks", low=0, high=1, closed="left")
    return smallest_masks([w.detach() for w in weights], amount, absolute=True)


# ---------------------------------------------------------------- model wrappers
def apply_masks_(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """Attach keep-masks {layer name: mask of the weight's shape} to a model, in place.

    Uses torch.nn.utils.prune's mechanism; a second call multiplies the masks (the pruned
    set only grows) and `remove_` makes it permanent.
    """
    check_module(model, "model", "apply_masks_")
    if not isinstance(masks, dict):
        raise TypeError(message("masks", "apply_masks_", "a dict {layer name: mask}", type(masks).__name__))
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        if name not in modules or not hasattr(modules[name], "weight"):
            raise ValueError(message("masks", "apply_masks_", "keyed by names of layers with a weight", name))
        layer = modules[name]
        check_tensor(mask, "masks", "apply_masks_", floating=False)
        if mask.shape != layer.weight.shape:
            raise ValueError(message("masks", "apply_masks_", f"masks of the weight's shape "
                                      f"{tuple(layer.weight.shape)} for {name!r}", tuple(mask.shape)))
        if hasattr(layer, "weight_mask"):                     # already pruned: combine in place
            with torch.no_grad():
                layer.weight_mask.mul_(mask.to(layer.weight_mask))
            layer.weight = layer.weight_orig * layer.weight_mask
        else:
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


_FRACTION = functools.partial(check_float, low=0, high=1, closed="left")


def prune_by_scores_(model: nn.Module, scores: dict[str, torch.Tensor], amount, scope: str = "layer",
                     permanent: bool = False) -> nn.Module:
    """Prune, in place, the weights of smallest score. Returns the model.

    scores: {layer name: tensor of the weight's shape, ≥ 0}. amount: fraction of the weights to be
    zero after the call (per layer, or of all scored weights for scope="global"); a dict
    {layer: amount} gives per-layer ratios (scope "layer" only; `validate.per_layer`: a layer left
    out is not pruned, an unknown name is a ValueError). Already-pruned weights have
    weight 0 and, for |w| and |w·g|, score 0, so they are counted in the amount.
    permanent=True zeroes the weights in place and keeps no mask nor copy (`remove_` at once); on a
    masked model it first folds every mask into its weight (`remove_`, the same Parameter object),
    then prunes: the zeros go into the weight itself, not the `weight` a forward pass recomputes.
    """
    return _prune_(model, scores, amount, scope, permanent, False, "prune_by_scores_")


def _prune_(model, scores, amount, scope, permanent, absolute, func):
    layers = prunable_layers(model, "model", func)
    check_choice(scope, "scope", func, ("layer", "global"))
    modules = dict(layers)
    if scores is not None and (not isinstance(scores, dict) or not scores or set(scores) - set(modules)):
        raise ValueError(message("scores", func, "a non-empty dict keyed by prunable layer names",
                                  type(scores).__name__))
    if scope == "global" and isinstance(amount, dict):
        raise ValueError(message("amount", func, "a float when scope='global'", amount))
    names = [n for n in modules if scores is None or n in scores]
    amounts = per_layer(amount, names, _FRACTION, "amount", func)
    if permanent:
        remove_(model)                     # the one rule: fold old masks into the weights first
    if scores is None:                     # magnitude: |w|, taken chunk by chunk (after the fold)
        scores = {n: m.weight.detach() for n, m in layers}
    groups = [list(scores)] if scope == "global" else [[n] for n in scores if n in amounts]
    if not permanent:
        keep = {}
        for g in groups:
            keep.update(zip(g, smallest_masks([scores[n] for n in g], amounts[g[0]], absolute)))
        return apply_masks_(model, keep)
    for g in groups:                                     # zero in place, chunk by chunk, no masks
        zero_smallest_([modules[n].weight for n in g], [scores[n] for n in g], amounts[g[0]], absolute)
    return model


def magnitude_(model: nn.Module, amount, scope: str = "layer", permanent: bool = False) -> nn.Module:
    """Magnitude pruning in place: the masks equal torch.nn.utils.prune.l1_unstructured (scope
    "layer") or global_unstructured with L1Unstructured (scope "global") at the same amount on
    a model without masks. Returns the model. See `prune_by_scores_` for amount and permanent
    (permanent=True needs no extra memory beyond a few chunks: the path for very large models)."""
    return _prune_(model, None, amount, scope, permanent, True, "magnitude_")


def magnitude(model: nn.Module, amount, scope: str = "layer", permanent: bool = False) -> nn.Module:
    """A magnitude-pruned copy of `model`: `magnitude_` applied to `clone(model)`, so the copy starts
    from `model`'s effective weights (old masks folded) and carries the new masks (none with
    permanent=True). `model` is not changed."""
    check_module(model, "model", "magnitude")
    return _prune_(clone(model), None, amount, scope, permanent, True, "magnitude")


def masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The current keep-masks {layer name: bool tensor} of a pruned model (empty if none)."""
    check_module(model, "model", "masks")
    return {name: m.weight_mask.detach().bool() for name, m in model.named_modules()
            if hasattr(m, "weight_mask")}


def clone(model: nn.Module) -> nn.Module:
    """A deep copy of `model` with every mask folded into its weight: the copy has plain
    Parameters (the zeros included) and no masks nor pruning hooks; `model` is not changed.

    The one rule of labkit's functions that copy a model (ptq, lowrank, int8, adaround, structured,
    pt2e, mobile): they call `clone`, so a masked model is copied with its masks folded.
    `copy.deepcopy` alone fails on a model masked by torch.nn.utils.prune after a forward pass
    (its `weight` is then a computed, non-leaf tensor); here the copy gets that tensor's value,
    which `remove_` on the copy then replaces by weight_orig · mask. A model holding another
    computed tensor is refused with a ValueError."""
    check_module(model, "model", "clone")
    memo = {}                                   # copy.deepcopy's memo: {id(x): x's copy}
    for m in model.modules():
        for name in _pruned_names(m):
            t = getattr(m, name, None)
            if isinstance(t, torch.Tensor) and not t.is_leaf:
                memo[id(t)] = t.detach()         # dropped by remove_ below
    try:
        new = copy.deepcopy(model, memo)
    except RuntimeError as e:
        if "graph leaves" not in str(e):
            raise
        raise ValueError(message("model", "clone", "a model whose tensors are Parameters, buffers or "
                                  "torch.nn.utils.prune masks", "a model holding a computed (non-leaf) tensor")) from e
    return remove_(new)


def _pruned_names(m: nn.Module) -> list[str]:
    """The names of the tensors of `m` that torch.nn.utils.prune masks (its forward pre-hooks)."""
    return [h._tensor_name for h in m._forward_pre_hooks.values()
            if isinstance(h, torch_prune.BasePruningMethod)]


def remove_(model: nn.Module) -> nn.Module:
    """Make pruning permanent: drop masks and hooks, keep the zeros in `weight`. In place.

    Each masked tensor becomes its Parameter `<name>_orig` (the same object, so an optimizer
    that holds it keeps working), with the value <name>_orig · <name>_mask."""
    check_module(model, "model", "remove_")
    for m in model.modules():
        for name in _pruned_names(m):
            torch_prune.remove(m, name)
    return model


def save(model: nn.Module, path) -> str:
    """Save the model's effective weights (zeros included, masks folded in) as safetensors.

    The model is not changed. Load with `load_(model, path)` into the same architecture."""
    check_module(model, "model", "save")
    sd = {}
    for name, m in model.named_modules():
        for pname, p in list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False)):
            if hasattr(m, "weight_mask") and pname in ("weight_orig", "weight_mask"):
                continue
            sd[f"{name}.{pname}" if name else pname] = p.detach().contiguous().cpu()
        if hasattr(m, "weight_mask"):
            sd[f"{name}.weight" if name else "weight"] = m.weight.detach().contiguous().cpu()
    save_file(sd, str(path))
    return str(path)


def load_(model: nn.Module, path) -> nn.Module:
    """Load weights saved by `save` into `model` (masks are removed first). In place; returns it."""
    check_module(model, "model", "load_")
    remove_(model)
    model.load_state_dict(load_file(str(path)), strict=True)
    return model
