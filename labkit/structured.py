"""Structured pruning: remove whole filters / neurons so the network becomes a smaller DENSE one.

Li et al. 2017, "Pruning Filters for Efficient ConvNets" (https://arxiv.org/abs/1608.08710):
rank the output filters F_j of a layer by their L1 norm

    s_j = Σ |F_j|        (F_j: the weights of output channel j, shape (C_in, k_h, k_w),
                          or the row j of a Linear weight, shape (n_in,))

and remove the m = round(amount · C_out) smallest, together with their bias and the matching
input channels of the next layer. Unstructured sparsity (`labkit.prune`) leaves every shape as
it was, so a dense kernel still does every multiply; here the shapes shrink, and parameters,
MACs and latency fall together (`labkit.count`). Seed 002 §5 and 003 §2.2 describe channel
pruning without code.

Supported: models whose Linear/Conv2d layers form a chain in `named_modules()` order, with
element-wise layers, pooling and Flatten between them (LeNet-5, LeNet-300-100, plain MLPs/CNNs).
The output layer is never pruned. A Conv → Linear step through Flatten maps channel j to the
inputs j·HW … (j+1)·HW − 1 of the Linear layer.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from .validate import check_float, check_module, check_tensor, message, per_layer, prunable_layers
from .prune import clone, n_to_prune

CHAIN = (nn.Linear, nn.Conv2d)


def filter_norms(w: torch.Tensor) -> torch.Tensor:
    """s_j = Σ|F_j|: the L1 norm of each output filter/neuron of a weight (C_out, ...) → (C_out,)."""
    check_tensor(w, "w", "filter_norms")
    if w.ndim < 2:
        raise ValueError(message("w", "filter_norms", "a weight with at least 2 dimensions", tuple(w.shape)))
    return w.detach().abs().flatten(1).sum(1)


def keep_filters(w: torch.Tensor, amount: float) -> torch.Tensor:
    """Sorted indices of the filters kept: all but the round(amount · C_out) of smallest L1 norm
    (ties: the higher index is removed first). At least one filter is kept."""
    s = filter_norms(w)
    amount = check_float(amount, "amount", "keep_filters", low=0, high=1, closed="left")
    n_keep = max(1, len(s) - n_to_prune(amount, len(s)))
    order = torch.sort(s, descending=True, stable=True).indices     # big first; ties: low index first
    return torch.sort(order[:n_keep]).values


def _chain(model):
    layers = prunable_layers(model, "model", "prune_filters")
    bad = [n for n, m in layers if not isinstance(m, CHAIN) or getattr(m, "groups", 1) != 1]
    if bad:
        raise ValueError(message("model", "prune_filters", "a chain of Linear/Conv2d layers (groups=1)", bad))
    return layers


def _set(model, name, new):
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


@torch.no_grad()
def _shrink(layer, keep_out=None, keep_in=None, in_group=1):
    """A new layer with only the output rows `keep_out` and the input columns `keep_in`
    (each input channel covering `in_group` consecutive inputs of a Linear after Flatten)."""
    w, b = layer.weight, layer.bias
    if keep_out is not None:
        w, b = w[keep_out], (b[keep_out] if b is not None else None)
    if keep_in is not None:
        cols = (keep_in[:, None] * in_group + torch.arange(in_group)).reshape(-1)
        w = w[:, cols]
    if isinstance(layer, nn.Linear):
        new = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
    else:
        new = nn.Conv2d(w.shape[1], w.shape[0], layer.kernel_size, stride=layer.stride,
                        padding=layer.padding, dilation=layer.dilation, bias=b is not None,
                        padding_mode=layer.padding_mode)
    new.weight.copy_(w)
    if b is not None:
        new.bias.copy_(b)
    return new.to(layer.weight.device)


def prune_filters(model: nn.Module, amount) -> nn.Module:
    """A new, smaller dense model: remove the round(amount · C_out) filters/neurons of smallest L1
    norm from every layer but the last. amount: a float, or {layer name: amount} (`validate.per_layer`:
    a layer left out keeps its filters; the output layer is no valid name). `model` is unchanged.
    A masked model is copied with its masks folded (`prune.clone`): the norms count the pruned
    weights as zeros, and the zeros are kept in the smaller layers.
    """
    layers = _chain(check_module(model, "model", "prune_filters"))
    names = [n for n, _ in layers]
    amounts = per_layer(amount, names[:-1], functools.partial(check_float, low=0, high=1, closed="left"),
                        "amount", "prune_filters")
    new = clone(model)
    layers, keep_in = _chain(new), None                 # the copy's layers: masks folded
    for i, (name, layer) in enumerate(layers):
        keep_out = keep_filters(layer.weight, amounts[name]) if name in amounts else None
        group = 1
        if keep_in is not None and isinstance(layer, nn.Linear) and isinstance(layers[i - 1][1], nn.Conv2d):
            group = layer.in_features // layers[i - 1][1].out_channels     # H·W per channel
        _set(new, name, _shrink(layer, keep_out, keep_in, group))
        keep_in = keep_out
    return new
