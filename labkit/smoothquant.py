"""SmoothQuant (Xiao et al. 2022, https://arxiv.org/abs/2211.10438): make activations int8-friendly.

A transformer's Linear inputs X (N, in) have a few channels j whose |X_j| is 10–100× the rest, in
every token; one int8 scale per token or per tensor then spends its levels on those channels and
rounds the others to 0 (labkit.w8a8 has the schemes). SmoothQuant moves the difficulty from the
activations into the weights W (out, in) with a per-input-channel scale s (in,), exactly in fp32:

    Y = X Wᵀ = (X diag(s)⁻¹) (W diag(s))ᵀ        s_j = max|X_j|^α / max|W_j|^(1−α)

max|X_j| over calibration tokens (`w8a8.input_absmax`), max|W_j| = max_i |W_ij| over the output
rows of every Linear reading X (q, k, v share one LayerNorm, hence one s); max|W_j| and s are
clamped at 1e-5 as the reference code does. α = 0.5 balances the two difficulties; α → 1 pushes
everything into the weights, α = 0 divides by the weight range alone.

Folding: X / s goes into the producer of X — a LayerNorm's weight and bias (an RMSNorm's weight),
or a preceding Linear's rows and bias (exact only if nothing but per-channel-linear maps lie
between, e.g. v_proj → attention → out_proj) — and W diag(s) into each consumer's columns, so the
fp32 model computes what it did. Then quantize with `w8a8.w8a8(model, ...)`: the maxima of the
smoothed input are act_max / s.
"""
from __future__ import annotations

import torch
from torch import nn

from .prune import clone
from .validate import check_float, check_module, message
from .w8a8 import CLAMP, check_absmax

NORMS = (nn.LayerNorm,) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())


def _linears(linears, func: str) -> list[nn.Linear]:
    linears = [linears] if isinstance(linears, nn.Linear) else linears
    if not isinstance(linears, (list, tuple)) or not linears or not all(isinstance(m, nn.Linear) for m in linears):
        raise TypeError(message("linears", func, "an nn.Linear or a non-empty list of them", type(linears).__name__))
    if len({m.in_features for m in linears}) != 1:
        raise ValueError(message("linears", func, "Linears of one in_features (they read the same X)",
                                 [m.in_features for m in linears]))
    return list(linears)


# ----------------------------------------------------------------------------- smoothing
def scales(act_max: torch.Tensor, weight_max: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """s_j = max|X_j|^α / max(max|W_j|, 1e-5)^(1−α), clamped at 1e-5. act_max, weight_max: (in,)."""
    act_max = check_absmax(act_max, "act_max", "scales")
    weight_max = check_absmax(weight_max, "weight_max", "scales", act_max.numel())
    alpha = check_float(alpha, "alpha", "scales", low=0, high=1)
    w = weight_max.float().clamp(min=CLAMP)
    return (act_max.float().pow(alpha) / w.pow(1 - alpha)).clamp(min=CLAMP)


def weight_max(linears) -> torch.Tensor:
    """max|W_j| (in,): the largest |W_ij| over the output rows i of every Linear in `linears`."""
    linears = _linears(linears, "weight_max")
    return torch.stack([m.weight.detach().abs().amax(dim=0) for m in linears]).amax(dim=0).float()


@torch.no_grad()
def fold_(prev: nn.Module, linears, s: torch.Tensor) -> None:
    """In place: prev's output divided by s (a norm's weight and bias, or a Linear's rows and bias),
    each Linear's columns multiplied by s; the composition prev → linears computes what it did."""
    linears = _linears(linears, "fold_")
    s = check_absmax(s, "s", "fold_", linears[0].in_features)
    if bool((s == 0).any()):
        raise ValueError(message("s", "fold_", "> 0 everywhere", "a zero scale"))
    if isinstance(prev, NORMS):
        if prev.weight is None or prev.weight.shape != s.shape:
            raise ValueError(message("prev", "fold_", f"a norm with an affine weight of shape {tuple(s.shape)}",
                                     type(prev).__name__))
        params = [prev.weight, getattr(prev, "bias", None)]
    elif isinstance(prev, nn.Linear):
        if prev.out_features != s.numel():
            raise ValueError(message("prev", "fold_", f"a Linear with out_features {s.numel()}", prev.out_features))
        params = [prev.bias]
        prev.weight.div_(s.to(prev.weight).unsqueeze(1))               # rows: out_prev = in
    else:
        raise TypeError(message("prev", "fold_", "an nn.LayerNorm, nn.RMSNorm or nn.Linear", type(prev).__name__))
    for p in params:
        if p is not None:
            p.div_(s.to(p))
    for m in linears:
        m.weight.mul_(s.to(m.weight).unsqueeze(0))                     # columns j


def fold(prev: nn.Module, linears, s: torch.Tensor):
    """`fold_` on copies → (prev′, [linear′]); prev and linears are not changed."""
    check_module(prev, "prev", "fold")
    copies = [clone(m) for m in _linears(linears, "fold")]
    prev = clone(prev)
    fold_(prev, copies, s)
    return prev, copies


def smooth_(prev: nn.Module, linears, act_max: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """SmoothQuant in place: s = scales(act_max, weight_max(linears), α) folded by `fold_` → s.
    act_max (in,): max|X_j| of the Linears' input; afterwards that input's maxima are act_max / s."""
    s = scales(act_max, weight_max(_linears(linears, "smooth_")), alpha)
    fold_(prev, linears, s)
    return s


def smooth(prev: nn.Module, linears, act_max: torch.Tensor, alpha: float = 0.5):
    """`smooth_` on copies → (prev′, [linear′], s)."""
    s = scales(act_max, weight_max(_linears(linears, "smooth")), alpha)
    return (*fold(prev, linears, s), s)


# ----------------------------------------------------------------------------- whole models
class Smoothed(nn.Module):
    """y = linear′(x / s), linear′ = linear with W diag(s): the smoothing kept as an explicit per-channel
    multiply (x · s⁻¹) where no producer can absorb it, e.g. a post-LN BERT, whose LayerNorm output is
    also the residual stream, or a GELU. A runtime folds s⁻¹ into the activation's quantize step."""

    def __init__(self, linear: nn.Linear, s: torch.Tensor):
        super().__init__()
        self.linear = clone(_linears(linear, "Smoothed")[0])
        s = check_absmax(s, "s", "Smoothed", linear.in_features)
        with torch.no_grad():
            self.linear.weight.mul_(s.to(self.linear.weight).unsqueeze(0))
        self.register_buffer("inv_s", 1.0 / s.float().clamp(min=CLAMP))

    def forward(self, x):
        return self.linear(x * self.inv_s)


def groups(model: nn.Module) -> list[tuple[str | None, list[str]]]:
    """[(producer name or None, [names of the Linears reading one X])] of a labkit GPT (pre-LN:
    ln_1 → c_attn and ln_2 → c_fc are folded; the attention and MLP output projections are not)
    or a MiniLM / BERT (post-LN: every LayerNorm output is also the residual, so nothing folds)."""
    check_module(model, "model", "groups")
    names = {n for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    out = []
    for n, m in model.named_modules():
        if n.endswith("attn.c_attn") and n.replace("attn.c_attn", "ln_1") in dict(model.named_modules()):
            b = n[: -len("attn.c_attn")]
            out += [(b + "ln_1", [n]), (None, [b + "attn.c_proj"]), (b + "ln_2", [b + "mlp.c_fc"]),
                    (None, [b + "mlp.c_proj"])]
        elif n.endswith("attention.self.query"):
            b = n[: -len("attention.self.query")]
            out += [(None, [b + f"attention.self.{p}" for p in ("query", "key", "value")]),
                    (None, [b + "attention.output.dense"]), (None, [b + "intermediate.dense"]),
                    (None, [b + "output.dense"])]
    if not out or not all(set(ls) <= names for _, ls in out):
        raise ValueError(message("model", "groups", "a labkit GPT or a MiniLM / BERT (Linears named as in "
                                 "labkit.gpt or transformers' BertModel)", type(model).__name__))
    return out


def smooth_model(model: nn.Module, act_max: dict, alpha: float = 0.5, fold_norms: bool = True) -> nn.Module:
    """A copy of `model` smoothed with one α: every group of `groups(model)` gets s from
    act_max {Linear name: max|X_j| (in,)} (`w8a8.input_absmax`) and max|W_j| of the group; s is folded
    into the producing LayerNorm where there is one (fold_norms), else each Linear becomes a
    `Smoothed` (its name gains '.linear'). The fp32 outputs are unchanged up to rounding."""
    check_module(model, "model", "smooth_model")
    alpha = check_float(alpha, "alpha", "smooth_model", low=0, high=1)
    if not isinstance(act_max, dict):
        raise TypeError(message("act_max", "smooth_model", "a dict {Linear name: max|X_j| (in,)}",
                                type(act_max).__name__))
    plan = groups(model)
    missing = [ls[0] for _, ls in plan if ls[0] not in act_max]
    if missing:
        raise ValueError(message("act_max", "smooth_model", "an entry for every Linear group", missing[:3]))
    model = clone(model)
    for prev, names in plan:
        linears = [model.get_submodule(n) for n in names]
        s = scales(act_max[names[0]], weight_max(linears), alpha)
        if prev is not None and fold_norms:
            fold_(model.get_submodule(prev), linears, s)
            continue
        for n, lin in zip(names, linears):
            parent, _, child = n.rpartition(".")
            setattr(model.get_submodule(parent), child, Smoothed(lin, s))
    return model
