"""Activation statistics of every nn.Linear, collected by forward hooks on calibration data:
what GPTQ, AWQ, SmoothQuant, Wanda and SparseGPT read about a layer's inputs.

For a Linear y = x Wᵀ + b, W: (out, in), stack the n input rows it sees into X: (n, in)
(a (B, T, in) input contributes B·T rows). Per layer, over all calibration batches:

    H       = XᵀX                    (in, in)  GPTQ / SparseGPT (their Hessian is 2XᵀX, the 2 cancels)
    sum_sq  = ‖X_j‖₂² = Σᵢ X_ij²     (in,)     Wanda's score |W_ij|·‖X_j‖₂ (sqrt of it); H's diagonal
    mean_abs = (1/n) Σᵢ |X_ij|        (in,)     AWQ's salience s_x
    max_abs  = maxᵢ |X_ij|           (in,)     SmoothQuant's max|X_j|
    n                                          rows seen

Sums are accumulated in float64 (`dtype`) so that many batches lose no precision; H is optional
(`hessian=False` saves in² memory per layer). Hooks are always removed and the model's train/eval
mode restored, even if a batch raises.

    stats = activations.collect(model, calib_batches)            # {"h.0.attn.c_attn": Stats, ...}
    stats["h.0.mlp.c_fc"].H                                       # (192, 192) float64
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from .validate import check_bool, check_module, message


@dataclass
class Stats:
    """Statistics of one Linear's inputs; see the module docstring. H is None if not collected."""
    n: int
    sum_sq: torch.Tensor        # (in,)
    sum_abs: torch.Tensor       # (in,)
    max_abs: torch.Tensor       # (in,)
    H: torch.Tensor | None      # (in, in)

    @property
    def mean_abs(self) -> torch.Tensor:
        return self.sum_abs / max(self.n, 1)

    @property
    def norm(self) -> torch.Tensor:
        """‖X_j‖₂, per input channel (Wanda)."""
        return self.sum_sq.sqrt()


def linears(model: nn.Module, include=None, exclude=("lm_head",)) -> dict[str, nn.Linear]:
    """{name: layer} of the model's nn.Linear layers, in module order. `include`: names to keep
    (None: all); `exclude`: names to drop (default the tied GPT head, which is the embedding)."""
    model = check_module(model, "model", "linears")
    found = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    if include is not None:
        if isinstance(include, str) or not all(isinstance(s, str) for s in include):
            raise TypeError(message("include", "linears", "a collection of layer names or None", include))
        unknown = sorted(set(include) - found.keys())
        if unknown:
            raise ValueError(message("include", "linears", f"names of Linear layers of the model "
                                     f"(e.g. {next(iter(found), '')!r})", unknown))
        found = {k: v for k, v in found.items() if k in set(include)}
    if isinstance(exclude, str) or not all(isinstance(s, str) for s in exclude):
        raise TypeError(message("exclude", "linears", "a collection of layer names", exclude))
    return {k: v for k, v in found.items() if k not in set(exclude)}


@torch.no_grad()
def collect(model: nn.Module, batches, hessian: bool = True, layers=None, dtype: torch.dtype = torch.float64,
            exclude=("lm_head",)) -> dict[str, Stats]:
    """Run `model` on each batch of `batches` (tensors, or mappings / tuples passed as **kwargs / *args)
    in eval mode under no_grad, and return {Linear name: Stats} of each Linear's inputs.
    `layers`: names to watch (default every Linear but `exclude`); `hessian`: also accumulate
    H = XᵀX; `dtype`: float64 or float32 accumulators. The model is not changed."""
    model = check_module(model, "model", "collect")
    hessian = check_bool(hessian, "hessian", "collect")
    if dtype not in (torch.float64, torch.float32):
        raise ValueError(message("dtype", "collect", "torch.float64 or torch.float32", dtype))
    if isinstance(batches, (torch.Tensor, Mapping)) or not hasattr(batches, "__iter__"):
        raise TypeError(message("batches", "collect", "an iterable of batches (e.g. a list of tensors)",
                                type(batches).__name__))
    watched = linears(model, include=layers, exclude=exclude)
    if not watched:
        raise ValueError(message("model", "collect", "a model with at least one nn.Linear to watch",
                                 type(model).__name__))
    acc: dict[str, dict] = {}

    def hook(name):
        def fn(module, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).to(dtype)     # (rows, in)
            a = acc.get(name)
            if a is None:
                d = x.shape[1]
                a = acc[name] = {"n": 0, "sum_sq": torch.zeros(d, dtype=dtype), "sum_abs": torch.zeros(d, dtype=dtype),
                                 "max_abs": torch.zeros(d, dtype=dtype),
                                 "H": torch.zeros(d, d, dtype=dtype) if hessian else None}
            a["n"] += x.shape[0]
            a["sum_sq"] += (x * x).sum(0)
            a["sum_abs"] += x.abs().sum(0)
            a["max_abs"] = torch.maximum(a["max_abs"], x.abs().amax(0))
            if hessian:
                a["H"].addmm_(x.T, x)
        return fn

    was_training = model.training
    handles = []
    seen = 0
    try:
        handles = [m.register_forward_pre_hook(hook(name)) for name, m in watched.items()]
        model.eval()
        for batch in batches:
            if isinstance(batch, Mapping):
                model(**batch)
            elif isinstance(batch, (tuple, list)):
                model(*batch)
            elif isinstance(batch, torch.Tensor):
                model(batch)
            else:
                raise TypeError(message("batches", "collect", "batches that are tensors, dicts or tuples",
                                        type(batch).__name__))
            seen += 1
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if seen == 0:
        raise ValueError(message("batches", "collect", "a non-empty iterable of batches", batches))
    return {name: Stats(**acc[name]) for name in watched if name in acc}
