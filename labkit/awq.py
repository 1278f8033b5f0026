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
labkit.quantize.groupwise (scheme "affine" = AWQ's default zero-point grid).

The reference's second step (`search_clip`) then shrinks each group's range before rounding:
per output row i and group g, W_ig is clamped to ±r · max|W_ig| with r ∈ {1, 0.95, …, 0.55},
r chosen to minimise that group's output error Δ_ig H_gg Δ_igᵀ (Δ = W − Q(clamp(W)), H = XᵀX
of the scaled inputs X / s; cross-group terms ignored, as in the reference). Clipping trades a
large error on the few largest weights for a finer grid for all the others.
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


def search_scale_hessian(W: torch.Tensor, H: torch.Tensor, s_x: torch.Tensor, bits: int = 4,
                         group_size: int | None = 128, scheme: str = "affine", n_grid: int = 20):
    """`search_scale` from statistics instead of the activations: H = XᵀX (in, in) and
    s_x = mean |X| per channel (in,) (activations.collect gives both), using
    ‖X Wᵀ − X Ŵᵀ‖² = Σ (ΔW H) ⊙ ΔW, an (in × in) product instead of an (n × in) one.
    → (s, α*, losses), losses = Σ (ΔW H) ⊙ ΔW / out: n times search_scale's (same s and α*)."""
    W = check_tensor(W, "W", "search_scale_hessian")
    check_tensor(H, "H", "search_scale_hessian")
    check_tensor(s_x, "s_x", "search_scale_hessian")
    if W.ndim != 2 or W.numel() == 0 or tuple(H.shape) != (W.shape[1],) * 2 or tuple(s_x.shape) != (W.shape[1],):
        raise ValueError(message("H", "search_scale_hessian", f"(in, in) with W (out, in) and s_x (in,)",
                                 f"W {tuple(W.shape)}, H {tuple(H.shape)}, s_x {tuple(s_x.shape)}"))
    for t, name in ((W, "W"), (H, "H"), (s_x, "s_x")):
        check_finite(t, name, "search_scale_hessian")
    bits = check_bits(bits, "bits", "search_scale_hessian", low=2, high=16)
    check_choice(scheme, "scheme", "search_scale_hessian", GROUP_SCHEMES)
    n_grid = check_int(n_grid, "n_grid", "search_scale_hessian", low=1, high=1000)
    W, H, s_x = W.detach().float(), H.detach().double(), s_x.detach().float()
    best, losses = (math.inf, None, None), []
    for i in range(n_grid):
        alpha = i / n_grid
        s = s_x.pow(alpha).clamp(min=1e-4)
        s = s / (s.max() * s.min()).sqrt()
        D = W.double() - (groupwise(W * s, bits, group_size, scheme) / s).double()
        loss = float(((D @ H) * D).sum()) / W.shape[0]
        losses.append(loss)
        if loss < best[0]:
            best = (loss, s, alpha)
    return best[1], best[2], torch.tensor(losses, dtype=torch.float64)


def search_clip(W: torch.Tensor, H: torch.Tensor, bits: int = 4, group_size: int | None = 128,
                scheme: str = "affine", n_grid: int = 20, max_shrink: float = 0.5):
    """AWQ's clipping search → (Ŵ = Q(clamp(W, ±r · max|W_ig|)) (out, in), r (out, groups)).

    W (out, in), H = XᵀX (in, in); r = 1 − k / n_grid for k = 0 … ⌊max_shrink · n_grid⌋ − 1
    (the reference's grid: 1, 0.95, …, 0.55), per (row, group) the r of least Δ_ig H_gg Δ_igᵀ,
    the first on ties (r = 1, plain RTN, when clipping does not help). group_size=None: one group
    per row (per channel), H_gg = H."""
    W = check_tensor(W, "W", "search_clip")
    check_tensor(H, "H", "search_clip")
    if W.ndim != 2 or W.numel() == 0 or tuple(H.shape) != (W.shape[1],) * 2:
        raise ValueError(message("H", "search_clip", "(in, in) with W (out, in)", f"W {tuple(W.shape)}, H {tuple(H.shape)}"))
    check_finite(W, "W", "search_clip")
    check_finite(H, "H", "search_clip")
    bits = check_bits(bits, "bits", "search_clip", low=2, high=16)
    check_choice(scheme, "scheme", "search_clip", GROUP_SCHEMES)
    n_grid = check_int(n_grid, "n_grid", "search_clip", low=1, high=1000)
    max_shrink = check_float(max_shrink, "max_shrink", "search_clip", low=0, high=1, closed="left")
    out, n = W.shape
    g = n if group_size is None or group_size == -1 else min(check_int(group_size, "group_size", "search_clip", low=1), n)
    pad = (-n) % g
    Wg = torch.nn.functional.pad(W.detach().float(), (0, pad)).reshape(out, -1, g)         # (out, G, g)
    Hp = torch.nn.functional.pad(H.detach().double(), (0, pad, 0, pad))
    G = Wg.shape[1]
    Hb = torch.stack([Hp[k * g:(k + 1) * g, k * g:(k + 1) * g] for k in range(G)])          # (G, g, g)
    amax = Wg.abs().amax(-1, keepdim=True)
    best = torch.full((out, G), math.inf, dtype=torch.float64)
    W_hat, r_best = torch.zeros_like(Wg), torch.ones(out, G)
    for k in range(max(1, int(max_shrink * n_grid))):
        r = 1 - k / n_grid
        Qc = groupwise(torch.maximum(torch.minimum(Wg, r * amax), -r * amax).reshape(-1, g), bits, None, scheme)
        Qc = Qc.reshape(out, G, g)
        D = (Wg - Qc).double()
        err = torch.einsum("ogj,gjk,ogk->og", D, Hb, D)
        better = err < best
        best = torch.where(better, err, best)
        W_hat = torch.where(better.unsqueeze(-1), Qc, W_hat)
        r_best = torch.where(better, torch.tensor(r), r_best)
    return W_hat.reshape(out, -1)[:, :n].to(W.dtype), r_best


def quantize_model(model: nn.Module, batches, bits: int = 4, group_size: int | None = 128,
                   scheme: str = "affine", n_grid: int = 20, clip: bool = True) -> nn.Module:
    """AWQ of every nn.Linear of `model` (but the tied `lm_head`) → a quantized copy whose
    Linears compute with Ŵ_s = Q(W · s) / s (what folding 1/s upstream computes; the model is
    not changed). All statistics (H, mean |x|) come from the fp32 model in one calibration
    pass of `batches` (as activations.collect takes them); s per layer by `search_scale_hessian`,
    then (clip=True, the reference's default) each group's range by `search_clip` on W · s with
    the scaled inputs' H / (s sᵀ)."""
    import copy

    from .activations import collect, linears

    check_module(model, "model", "quantize_model")
    bits = check_bits(bits, "bits", "quantize_model", low=2, high=16)
    check_choice(scheme, "scheme", "quantize_model", GROUP_SCHEMES)
    if not isinstance(clip, bool):
        raise TypeError(message("clip", "quantize_model", "a bool", clip))
    q = copy.deepcopy(model)
    stats = collect(q, batches)
    with torch.no_grad():
        for name in linears(q):
            lin, st = q.get_submodule(name), stats[name]
            s, _, _ = search_scale_hessian(lin.weight, st.H, st.mean_abs, bits, group_size, scheme, n_grid)
            W_s = lin.weight.float() * s
            if clip:
                s64 = s.double()
                W_hat = search_clip(W_s, st.H.double() / torch.outer(s64, s64), bits, group_size, scheme)[0]
            else:
                W_hat = groupwise(W_s, bits, group_size, scheme)
            lin.weight.copy_((W_hat / s).to(lin.weight.dtype))
    return q
