"""AWQ: activation-aware weight quantization.

Lin, Tang, Tang, Yang, Chen, Wang, Xiao, Dang, Gan, Han 2023, "AWQ: Activation-aware Weight
Quantization for LLM Compression and Acceleration", https://arxiv.org/abs/2306.00978.

A Linear y = x Wᵀ, W: (out, in), calibration inputs X: (n, in). Not all weights matter alike:
the input channels j with large activations s_x,j = mean_n |X_nj| ("salient", ~1 %) carry most
of the output. Keeping just those 1 % of W's columns in fp16 recovers most of RTN's loss, a
random 1 % does not (paper Table 1; `salient_ablation`). Mixed precision is awkward in hardware,
so AWQ protects them by scaling instead: for any s > 0 per input channel,

    y = x Wᵀ = (x / s) (W · diag(s))ᵀ,       Ŵ_s = Q(W · diag(s)) · diag(s)⁻¹

and scaling a column up by s_j > 1 shrinks its relative rounding error (the group's step barely
moves). The scales are searched, not learned (paper eq. 5):

    s = s_x^α,    α* = argmin_{α ∈ {0, 1/N, …, (N−1)/N}} ‖X Wᵀ − X Ŵ_sᵀ‖²

(`search_scale`; N = 20, s normalized by √(max s · min s) as the reference code does; α = 0 is
plain RTN, so AWQ never does worse than RTN on the calibration data). 1/s is then folded into
the op before the layer (a LayerNorm's weight and bias, or the previous Linear's rows) and s into
the layer's columns, which leaves the fp32 function unchanged (`fold_`). The quantizer Q is
labkit.quantize.groupwise (scheme "affine" = AWQ's default zero-point grid). Left out: the
reference's second step, the clipping search over max|w| per group.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .quantize import GROUP_SCHEMES, groupwise
from .validate import check_bits, check_choice, check_finite, check_float, check_int, check_module, check_tensor, message


def _check_wx(W, X, func: str):
    check_tensor(W, "W", func)
    if W.ndim != 2 or W.numel() == 0:
        raise ValueError(message("W", func, "a non-empty 2-D weight (out, in)", f"shape {tuple(W.shape)}"))
    check_finite(W, "W", func)
    check_tensor(X, "X", func)
    if X.ndim < 2 or X.shape[-1] != W.shape[1] or X.numel() == 0:
        raise ValueError(message("X", func, f"activations (n, in = {W.shape[1]})", f"shape {tuple(X.shape)}"))
    check_finite(X, "X", func)
    return W.detach().float(), X.detach().reshape(-1, W.shape[1]).float()


def act_scale(X: torch.Tensor) -> torch.Tensor:
    """s_x = mean |x| per input channel: X (…, in) → (in,) (the paper's activation magnitude)."""
    check_tensor(X, "X", "act_scale")
    if X.ndim == 0 or X.numel() == 0:
        raise ValueError(message("X", "act_scale", "activations (n, in)", f"shape {tuple(X.shape)}"))
    check_finite(X, "X", "act_scale")
    return X.detach().abs().reshape(-1, X.shape[-1]).mean(0)


def salient_channels(act_mean: torch.Tensor, amount: float = 0.01) -> torch.Tensor:
    """Indices (int64, sorted) of the max(1, round(amount · in)) channels of largest mean |x|."""
    check_tensor(act_mean, "act_mean", "salient_channels")
    if act_mean.ndim != 1 or act_mean.numel() == 0:
        raise ValueError(message("act_mean", "salient_channels", "a 1-D tensor (in,)", f"shape {tuple(act_mean.shape)}"))
    check_finite(act_mean, "act_mean", "salient_channels")
    amount = check_float(amount, "amount", "salient_channels", low=0, high=1, closed="right")
    k = max(1, round(amount * act_mean.numel()))
    return torch.topk(act_mean.detach(), k).indices.sort().values


def output_error(W: torch.Tensor, W_hat: torch.Tensor, X: torch.Tensor) -> float:
    """Mean squared layer-output error (1/(n·out)) ‖X Wᵀ − X Ŵᵀ‖² (float64)."""
    W, X = _check_wx(W, X, "output_error")
    check_tensor(W_hat, "W_hat", "output_error")
    if W_hat.shape != W.shape:
        raise ValueError(message("W_hat", "output_error", f"of W's shape {tuple(W.shape)}", f"shape {tuple(W_hat.shape)}"))
    return float(((X.double() @ (W.double() - W_hat.detach().double()).T) ** 2).mean())


def salient_ablation(W: torch.Tensor, X: torch.Tensor, bits: int = 3, group_size: int | None = 128,
                     amount: float = 0.01, scheme: str = "affine", seed: int = 0) -> dict:
    """The paper's Table 1 on one layer: `output_error` of RTN with a fraction `amount` of W's
    input channels kept in fp16 (not quantized), chosen by activation (mean |x|), by weight
    (the column's mean |w|) or at random (`seed`), and of plain RTN:
    {"rtn", "activation", "weight", "random"} → error."""
    W, X = _check_wx(W, X, "salient_ablation")
    bits = check_bits(bits, "bits", "salient_ablation", low=2, high=16)
    amount = check_float(amount, "amount", "salient_ablation", low=0, high=1, closed="right")
    check_choice(scheme, "scheme", "salient_ablation", GROUP_SCHEMES)
    seed = check_int(seed, "seed", "salient_ablation", low=0)
    rtn = groupwise(W, bits, group_size, scheme)
    k = max(1, round(amount * W.shape[1]))
    picks = {"activation": salient_channels(act_scale(X), amount),
             "weight": salient_channels(W.abs().mean(0), amount),
             "random": torch.randperm(W.shape[1], generator=torch.Generator().manual_seed(seed))[:k].sort().values}
    out = {"rtn": output_error(W, rtn, X)}
    for name, idx in picks.items():
        mixed = rtn.clone()
        mixed[:, idx] = W[:, idx].half().float()
        out[name] = output_error(W, mixed, X)
    return out


def search_scale(W: torch.Tensor, X: torch.Tensor, bits: int = 4, group_size: int | None = 128,
                 scheme: str = "affine", n_grid: int = 20):
    """The grid search of s = s_x^α → (s (in,), α*, losses (n_grid,) over α = i / n_grid).

    s_x = mean |X| per channel (clamped to ≥ 1e-4 after the power), s normalized to
    s / √(max s · min s); loss = `output_error(W, Q(W · s) / s, X)`. losses[0] is RTN's."""
    W, X = _check_wx(W, X, "search_scale")
    bits = check_bits(bits, "bits", "search_scale", low=2, high=16)
    check_choice(scheme, "scheme", "search_scale", GROUP_SCHEMES)
    n_grid = check_int(n_grid, "n_grid", "search_scale", low=1, high=1000)
    s_x = act_scale(X)
    Y = X.double() @ W.double().T
    best, losses = (math.inf, None, None), []
    for i in range(n_grid):
        alpha = i / n_grid
        s = s_x.pow(alpha).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        W_s = groupwise(W * s, bits, group_size, scheme) / s
        loss = float(((Y - X.double() @ W_s.double().T) ** 2).mean())
        losses.append(loss)
        if loss < best[0]:
            best = (loss, s, alpha)
    return best[1], best[2], torch.tensor(losses, dtype=torch.float64)


def quantize_weight(W: torch.Tensor, X: torch.Tensor, bits: int = 4, group_size: int | None = 128,
                    scheme: str = "affine", n_grid: int = 20) -> torch.Tensor:
    """AWQ → Ŵ_s = Q(W · s) / s in the original basis (W's shape and dtype): the weight the layer
    computes with once s is folded (use `fold_` to store Q(W · s) and fold 1/s upstream)."""
    s, _, _ = search_scale(W, X, bits, group_size, scheme, n_grid)
    return (groupwise(W.detach().float() * s, bits, group_size, scheme) / s).to(W.dtype)


@torch.no_grad()
def fold_(prev: nn.Module, linears, s: torch.Tensor) -> None:
    """In place: divide the output channels of `prev` by s and multiply the input columns of
    each Linear in `linears` (one, or a list sharing the same input, e.g. q, k, v) by s.

    prev: nn.LayerNorm (weight and bias / s) or nn.Linear (rows of weight and bias / s), whose
    output feeds the linears directly (no nonlinearity between: GELU is not homogeneous).
    Then linear(prev(x)) is unchanged in exact arithmetic (to ~1e-6 in float32)."""
    check_module(prev, "prev", "fold_")
    linears = [linears] if isinstance(linears, nn.Module) else linears
    if not isinstance(linears, (list, tuple)) or not linears or not all(isinstance(m, nn.Linear) for m in linears):
        raise TypeError(message("linears", "fold_", "an nn.Linear or a non-empty list of them", type(linears).__name__))
    check_tensor(s, "s", "fold_")
    n = linears[0].in_features
    if s.shape != (n,) or not bool((torch.isfinite(s) & (s > 0)).all()):
        raise ValueError(message("s", "fold_", f"positive finite scales of shape ({n},)", f"shape {tuple(s.shape)}"))
    if isinstance(prev, nn.LayerNorm):
        if prev.weight is None or prev.normalized_shape != (n,):
            raise ValueError(message("prev", "fold_", f"a LayerNorm({n}) with an affine weight", prev))
        params = [prev.weight, prev.bias]
    elif isinstance(prev, nn.Linear) and prev.out_features == n:
        params = [prev.weight, prev.bias]
    else:
        raise ValueError(message("prev", "fold_", f"an nn.LayerNorm({n}) or an nn.Linear with {n} outputs", prev))
    for p in params:
        if p is not None:
            p.div_(s.to(p.dtype).reshape(-1, *[1] * (p.ndim - 1)))
    for m in linears:
        if m.in_features != n:
            raise ValueError(message("linears", "fold_", f"Linears with in_features = {n}", m))
        m.weight.mul_(s.to(m.weight.dtype))
