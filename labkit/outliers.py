"""Activation outliers: where a transformer's large activations live, and quantizing the residual stream.

Bondarenko et al. 2021 (https://arxiv.org/abs/2109.12948) on BERT: a few hidden dimensions carry
values 10–100× the rest, in every layer, mostly on the [SEP] and delimiter tokens ("no-op"
attention), and per-tensor int8 of the residual sums (the LayerNorm inputs) breaks the model;
Dettmers et al. 2022 (LLM.int8()) find the same features in every layer of large decoders.

Sites, for an input X (rows × d) seen over calibration tokens (padding excluded by the batch's
attention_mask when it has one): the input of every nn.Linear ("linear") and of every LayerNorm
("residual": in a post-LN BERT and a pre-LN GPT alike, a LayerNorm reads the residual sum x + f(x)).
Per channel j:

    max_j = maxᵢ |X_ij|     pct_j = the q-th percentile of |X_ij|     kurt_j = E[(X_ij − μ_j)⁴] / σ_j⁴

(Pearson's kurtosis: 3 for a Gaussian; scipy.stats.kurtosis(fisher=False)). A channel whose max is
≫ the median channel's max is an outlier dimension.

`quantize_residual(model, act_max)`: a copy whose LayerNorms fake-quantize their input, static per
tensor on the W8A8 grid s = max|x| / 127 (labkit.w8a8) — the residual sums Bondarenko quantizes.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .prune import clone
from .validate import check_choice, check_float, check_module, message
from .w8a8 import absmax_scale, fake_quant

KINDS = ("linear", "residual")
NORMS = (nn.LayerNorm,) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())


def sites(model: nn.Module, kind: str = "linear", exclude=("lm_head",)) -> dict[str, nn.Module]:
    """{name: module} whose input is watched: every nn.Linear ("linear", but `exclude`) or every
    LayerNorm / RMSNorm ("residual"), in module order."""
    model = check_module(model, "model", "sites")
    check_choice(kind, "kind", "sites", KINDS)
    types = nn.Linear if kind == "linear" else NORMS
    found = {n: m for n, m in model.named_modules() if isinstance(m, types) and n not in set(exclude)}
    if not found:
        raise ValueError(message("model", "sites", f"a model with a {kind} site", type(model).__name__))
    return found


def _run(model, batch):
    if isinstance(batch, Mapping):
        return model(**batch)
    return model(*batch) if isinstance(batch, tuple) else model(batch)


@torch.no_grad()
def inputs(model: nn.Module, batches, kind: str = "linear") -> dict[str, torch.Tensor]:
    """{site name: X (rows, d) float32}: every real token's input at each site over `batches`
    (tensors, tuples or dicts of model arguments; a dict's attention_mask drops padded tokens)."""
    model = check_module(model, "model", "inputs")
    watched = sites(model, kind)
    if isinstance(batches, (torch.Tensor, Mapping)) or not hasattr(batches, "__iter__"):
        raise TypeError(message("batches", "inputs", "an iterable of batches (e.g. a list of dicts)",
                                type(batches).__name__))
    seen: dict[str, list] = {n: [] for n in watched}
    keep = [None]

    def hook(name):
        def fn(module, args):
            x = args[0].detach().float()
            if keep[0] is not None and x.shape[:-1] == keep[0].shape:
                x = x[keep[0]]
            seen[name].append(x.reshape(-1, x.shape[-1]))
        return fn

    was_training = model.training
    handles = [m.register_forward_pre_hook(hook(n)) for n, m in watched.items()]
    try:
        model.eval()
        n = 0
        for batch in batches:
            mask = batch.get("attention_mask") if isinstance(batch, Mapping) else None
            keep[0] = None if mask is None else mask.bool()
            _run(model, batch)
            n += 1
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if n == 0:
        raise ValueError(message("batches", "inputs", "a non-empty iterable of batches", batches))
    return {k: torch.cat(v) for k, v in seen.items()}


def channel_stats(X: torch.Tensor, q: float = 99.0) -> dict[str, torch.Tensor]:
    """Per-channel statistics of X (rows, d) → {"max": max|X_j|, "pct": q-th percentile of |X_j|,
    "kurtosis": Pearson kurtosis of X_j (3 = Gaussian)}, each (d,) float64."""
    if not isinstance(X, torch.Tensor) or X.ndim != 2 or X.shape[0] < 2 or not torch.isfinite(X).all():
        raise ValueError(message("X", "channel_stats", "a finite 2-D tensor (rows ≥ 2, channels)",
                                 f"shape {tuple(X.shape)}" if isinstance(X, torch.Tensor) else type(X).__name__))
    q = check_float(q, "q", "channel_stats", low=0, high=100)
    x = X.double()
    c = x - x.mean(0)
    var = (c ** 2).mean(0)
    kurt = (c ** 4).mean(0) / var.clamp(min=1e-300) ** 2
    return {"max": x.abs().amax(0), "pct": torch.quantile(x.abs(), q / 100, dim=0),
            "kurtosis": torch.where(var > 0, kurt, torch.zeros_like(kurt))}


def summary(stats: dict, top: int = 3) -> list[dict]:
    """One row per site of {name: channel_stats(...)}: the largest max, the median channel's max,
    their ratio, the `top` channels by max, and the largest kurtosis."""
    if not isinstance(stats, dict) or not stats:
        raise TypeError(message("stats", "summary", "a non-empty dict {site: channel_stats(X)}", type(stats).__name__))
    rows = []
    for name, s in stats.items():
        m = s["max"]
        rows.append({"site": name, "max": float(m.max()), "median max": float(m.median()),
                     "ratio": float(m.max() / m.median().clamp(min=1e-12)),
                     "top channels": m.argsort(descending=True)[:top].tolist(),
                     "max kurtosis": float(s["kurtosis"].max())})
    return rows


@torch.no_grad()
def token_magnitude(model: nn.Module, batch: dict, site: str, channels) -> torch.Tensor:
    """max over `channels` of |X| at `site`'s input, per token → (N, L), 0 at padded tokens:
    which tokens carry the outlier dimensions. `batch`: a dict of model arguments."""
    model = check_module(model, "model", "token_magnitude")
    if not isinstance(batch, Mapping) or "input_ids" not in batch:
        raise TypeError(message("batch", "token_magnitude", "a dict with input_ids (model.tokenize(...))",
                                type(batch).__name__))
    found = dict(model.named_modules())
    if site not in found:
        raise ValueError(message("site", "token_magnitude", "the name of a module of the model", site))
    channels = list(channels)
    out = []
    h = found[site].register_forward_pre_hook(lambda m, a: out.append(a[0].detach().float()))
    try:
        _run(model, batch)
    finally:
        h.remove()
    x = out[0]
    if not channels or max(channels) >= x.shape[-1] or min(channels) < 0:
        raise ValueError(message("channels", "token_magnitude", f"channel indices in [0, {x.shape[-1]})", channels))
    mag = x[..., channels].abs().amax(-1)
    mask = batch.get("attention_mask")
    return mag if mask is None else mag * mask.to(mag.dtype)


class QuantInput(nn.Module):
    """norm(x̂): x fake-quantized static per tensor (scale s) before the wrapped LayerNorm."""

    def __init__(self, norm: nn.Module, scale: torch.Tensor):
        super().__init__()
        self.norm = norm
        self.register_buffer("scale", scale)

    def forward(self, x):
        return self.norm(fake_quant(x, self.scale))


def quantize_residual(model: nn.Module, act_max: dict, bits: int = 8) -> nn.Module:
    """A copy of `model` whose LayerNorms read their input fake-quantized, static per tensor:
    s = max(act_max[name]) / 127 (act_max {norm name: max|x_j| (d,)}, e.g. channel_stats' "max")."""
    model = check_module(model, "model", "quantize_residual")
    norms = sites(model, "residual")
    if not isinstance(act_max, dict) or not set(norms) <= set(act_max):
        raise ValueError(message("act_max", "quantize_residual", "a dict with the max|x| of every norm "
                                 f"({', '.join(list(norms)[:2])}, ...)", type(act_max).__name__))
    model = clone(model)
    for name in norms:
        parent, _, child = name.rpartition(".")
        holder = model.get_submodule(parent) if parent else model
        scale = absmax_scale(torch.as_tensor(act_max[name]).float().amax(), bits)
        setattr(holder, child, QuantInput(model.get_submodule(name), scale))
    return model
