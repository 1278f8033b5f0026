"""Low-rank factorization: replace a weight matrix by the product of two thin ones.

Eckart & Young (1936): for W ∈ R^{m×n} with singular value decomposition W = U Σ Vᵀ
(σ_1 ≥ σ_2 ≥ … ≥ 0), the best approximation of rank r in the Frobenius (and spectral) norm is
the truncated SVD

    W_r = U_r Σ_r V_rᵀ,        ‖W − W_r‖_F = sqrt(σ_{r+1}² + … + σ_min(m,n)²)

A Linear layer y = W x + b (W: (out, in)) becomes two Linear layers

    h = B x        B = Σ_r^{1/2} V_rᵀ : (r, in),  no bias
    y = A h + b    A = U_r Σ_r^{1/2}  : (out, r)

with r·(in + out) weights instead of in·out: fewer whenever r < in·out / (in + out).
A Conv2d with weight (out, in, kh, kw) is the matrix (out, in·kh·kw) applied to every
k×k patch; its factors are a kh×kw conv with r filters followed by a 1×1 conv
(Jaderberg et al. 2014, Zhang et al. 2015). The rank can be given directly, or chosen as the
smallest r that keeps a fraction `energy` of Σσ² (the "kept energy").

Seed 000 §7 names low-rank decomposition as a compression method and stops there; notebook 06
shows the spectra, the rank/accuracy/size/latency trade-off and the fine-tuning that follows.
Kernels (`svd_factors`, `rank_for_energy`) are pure; `svd_linear`, `svd_conv2d` and
`factorize` build new modules and never change the one they are given.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from .validate import check_float, check_int, check_module, check_tensor, message, per_layer
from .prune import clone


def svd_factors(W: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) with A: (m, r), B: (r, n) and A @ B = W_r, the best rank-r approximation of W (m, n).

    The singular values are split evenly: A = U_r Σ_r^{1/2}, B = Σ_r^{1/2} V_rᵀ.
    Computed in float64 and returned in W's dtype.
    """
    check_tensor(W, "W", "svd_factors")
    if W.ndim != 2:
        raise ValueError(message("W", "svd_factors", "a 2-D tensor", f"shape {tuple(W.shape)}"))
    rank = check_int(rank, "rank", "svd_factors", low=1, high=min(W.shape))
    U, S, Vh = torch.linalg.svd(W.detach().double(), full_matrices=False)   # U (m,k) S (k,) Vh (k,n)
    root = S[:rank].sqrt()
    A = U[:, :rank] * root                                                # (m, r)
    B = root[:, None] * Vh[:rank]                                         # (r, n)
    return A.to(W.dtype), B.to(W.dtype)


def singular_values(W: torch.Tensor) -> torch.Tensor:
    """σ_1 ≥ … ≥ σ_k of W, k = min(m, n). A Conv weight (out, in, kh, kw) is read as (out, in·kh·kw)."""
    check_tensor(W, "W", "singular_values")
    if W.ndim < 2:
        raise ValueError(message("W", "singular_values", "a tensor with at least 2 dimensions",
                                  f"shape {tuple(W.shape)}"))
    return torch.linalg.svdvals(W.detach().double().reshape(W.shape[0], -1)).to(W.dtype)


def rank_for_energy(S: torch.Tensor, energy: float) -> int:
    """The smallest r with Σ_{i≤r} σ_i² ≥ energy · Σ_i σ_i² (S sorted descending). energy ∈ (0, 1]."""
    check_tensor(S, "S", "rank_for_energy")
    if S.ndim != 1 or len(S) == 0:
        raise ValueError(message("S", "rank_for_energy", "a non-empty 1-D tensor",
                                  f"shape {tuple(S.shape)}"))
    energy = check_float(energy, "energy", "rank_for_energy", low=0, high=1, closed="right")
    e = S.double().pow(2).cumsum(0)
    if e[-1] == 0:
        return 1
    # a relative tolerance so that energy = 1.0 is reached despite rounding in the cumsum
    r = int(torch.searchsorted(e, energy * e[-1] * (1 - 1e-12)).item()) + 1
    return min(r, len(S))


def svd_linear(layer: nn.Linear, rank: int) -> nn.Sequential:
    """nn.Sequential(Linear(in, r, bias=False), Linear(r, out)) computing W_r x + b. `layer` is unchanged."""
    if not isinstance(layer, nn.Linear):
        raise TypeError(message("layer", "svd_linear", "a torch.nn.Linear", type(layer).__name__))
    out_f, in_f = layer.weight.shape
    rank = check_int(rank, "rank", "svd_linear", low=1, high=min(out_f, in_f))
    A, B = svd_factors(layer.weight, rank)
    w = layer.weight
    # skip_init: the weights are set below, so no init is drawn from the global RNG
    first = nn.utils.skip_init(nn.Linear, in_f, rank, bias=False, device=w.device, dtype=w.dtype)
    second = nn.utils.skip_init(nn.Linear, rank, out_f, bias=layer.bias is not None, device=w.device,
                                dtype=w.dtype)
    with torch.no_grad():
        first.weight.copy_(B)
        second.weight.copy_(A)
        if layer.bias is not None:
            second.bias.copy_(layer.bias)
    return nn.Sequential(first, second)


def svd_conv2d(layer: nn.Conv2d, rank: int) -> nn.Sequential:
    """A kh×kw Conv2d with r filters, then a 1×1 Conv2d to `out` channels: the rank-r
    approximation of the (out, in·kh·kw) weight matrix. Stride, padding and dilation stay on the
    first conv. groups must be 1. `layer` is unchanged."""
    if not isinstance(layer, nn.Conv2d):
        raise TypeError(message("layer", "svd_conv2d", "a torch.nn.Conv2d", type(layer).__name__))
    if layer.groups != 1 or layer.padding_mode != "zeros":
        raise ValueError(message("layer", "svd_conv2d", "a Conv2d with groups=1 and "
                                  "padding_mode='zeros'", layer))
    out_c, in_c, kh, kw = layer.weight.shape
    rank = check_int(rank, "rank", "svd_conv2d", low=1, high=min(out_c, in_c * kh * kw))
    A, B = svd_factors(layer.weight.reshape(out_c, -1), rank)          # A (out, r), B (r, in·kh·kw)
    w = layer.weight
    first = nn.utils.skip_init(nn.Conv2d, in_c, rank, (kh, kw), stride=layer.stride, padding=layer.padding,
                               dilation=layer.dilation, bias=False, device=w.device, dtype=w.dtype)
    second = nn.utils.skip_init(nn.Conv2d, rank, out_c, 1, bias=layer.bias is not None, device=w.device,
                                dtype=w.dtype)
    with torch.no_grad():
        first.weight.copy_(B.reshape(rank, in_c, kh, kw))
        second.weight.copy_(A.reshape(out_c, rank, 1, 1))
        if layer.bias is not None:
            second.bias.copy_(layer.bias)
    return nn.Sequential(first, second)


def _max_rank(layer: nn.Module) -> int:
    return min(layer.weight.shape[0], layer.weight[0].numel())


def _saves(layer: nn.Module, rank: int) -> bool:
    m, n = layer.weight.shape[0], layer.weight[0].numel()
    return rank * (m + n) < m * n


def _factorable(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)]


def factorize(model: nn.Module, rank: int | dict | None = None, energy: float | None = None,
              skip: tuple[str, ...] = (), only_if_smaller: bool = True) -> nn.Module:
    """A copy of `model` whose Linear and Conv2d (groups=1) layers are replaced by SVD factors.

    Give exactly one of
      rank:   an int for every layer (capped at each layer's min(m, n)) or {layer name: rank}
              (`validate.per_layer`: a layer missing from the dict is kept, an unknown name is
              a ValueError);
      energy: per layer, the smallest rank that keeps this fraction of Σσ² (`rank_for_energy`).
    skip: layer names to keep as they are. only_if_smaller: keep a layer whose factors would
    have as many weights as it has or more. The model given is not changed.
    The chosen ranks are stored on the copy as `model.lowrank_ranks = {name: r}`.
    """
    check_module(model, "model", "factorize")
    if (rank is None) == (energy is None):
        raise ValueError(message("rank", "factorize", "given, or energy given, but not both",
                                  rank))
    if not isinstance(skip, (tuple, list, set)):
        raise TypeError(message("skip", "factorize", "a tuple of layer names", skip))
    if energy is not None:
        energy = check_float(energy, "energy", "factorize", low=0, high=1, closed="right")
    else:
        rank = per_layer(rank, [n for n, _ in _factorable(model)], functools.partial(check_int, low=1),
                         "rank", "factorize")
    new = clone(model)
    layers = _factorable(new)
    ranks = {}
    for name, layer in layers:
        if name in skip:
            continue
        if energy is not None:
            r = rank_for_energy(singular_values(layer.weight), energy)
        elif name not in rank:
            continue
        else:
            r = min(rank[name], _max_rank(layer))
        if only_if_smaller and not _saves(layer, r):
            continue
        factored = svd_linear(layer, r) if isinstance(layer, nn.Linear) else svd_conv2d(layer, r)
        parent_name, _, child = name.rpartition(".")
        parent = new.get_submodule(parent_name) if parent_name else new
        setattr(parent, child, factored)
        ranks[name] = r
    new.lowrank_ranks = ranks
    return new
