"""Quantizing a whole model: post-training quantization (PTQ) with calibration, and QAT.

Simulated ("fake") quantization, as in Jacob et al. 2018 (https://arxiv.org/abs/1712.05877):
every Linear / Conv layer is wrapped by a `QuantLayer` that computes

    y = layer(x̂; Ŵ),   x̂ = fake_quantize(x; s_a, z_a)  (activations, a_bits, affine)
                        Ŵ = fake_quantize(W; s_w, z_w)  (weights, bits, per tensor or per channel)

in floating point, so the numbers are those of an integer model but the speed is not: see
`labkit.int8` for a real integer runtime. The weight range is W's own min-max, recomputed every
forward pass (so it follows W during training). The activation range [lo, hi] comes from
*calibration* on sample inputs:

    minmax      lo, hi = min x, max x
    percentile  lo, hi = the (100 − p)-th and p-th percentiles of x (clips rare outliers)
    mse         lo, hi = α·(min x, max x) with α ∈ (0, 1] minimizing ‖x − x̂‖² (a grid search)

Quantization-aware training (QAT) is training the wrapped model with `labkit.train.fit`: the
forward pass sees the quantized Ŵ, the backward pass uses the straight-through estimator
(∂Ŵ/∂W = 1 inside the clipping range, 0 outside), and in training mode [lo, hi] follows each
batch by an exponential moving average (torch's MovingAverageMinMaxObserver, constant 0.01).
"""
from __future__ import annotations

import functools

import torch
from torch import nn
from torch.nn import functional as F

from . import quantize as Q
from .validate import (check_bits, check_choice, check_finite, check_float, check_int, check_module,
                       check_tensor, message, per_layer, prunable_layers)
from .prune import clone
from .train import predict

CALIBRATIONS = ("minmax", "percentile", "mse")
GRANULARITIES = ("tensor", "channel")
AXES = {"tensor": None, "channel": 0}     # granularity → quantize's axis (table: labkit.quantize)


class QuantLayer(nn.Module):
    """A Linear / Conv layer computed with fake-quantized weights and (optionally) inputs."""

    def __init__(self, layer: nn.Module, bits: int | None = 8, scheme: str = "symmetric",
                 granularity: str = "channel", a_bits: int | None = 8, momentum: float = 0.01,
                 kernel=None):
        super().__init__()
        self.layer, self.bits, self.scheme, self.a_bits = layer, bits, scheme, a_bits
        self.kernel = kernel                                      # None: labkit's STE kernel
        self.axis = AXES[granularity]                             # weight (C_out, ...) → per C_out
        self.momentum = momentum
        self.register_buffer("lo", torch.tensor(float("nan")))   # activation range, set by
        self.register_buffer("hi", torch.tensor(float("nan")))   # calibration or training
        self.samples: list[torch.Tensor] | None = None           # filled while calibrating

    def weight(self) -> torch.Tensor:
        w = self.layer.weight
        return w if self.bits is None else Q._fake_quantize(w, self.bits, self.scheme, self.axis,
                                                            kernel=self.kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.a_bits is not None:
            if self.samples is not None:                          # calibrating: just record
                self.samples.append(x.detach().reshape(-1)[::max(1, x.numel() // 20000)].cpu())
            elif self.training:                                   # QAT: moving average of range
                lo, hi = x.detach().aminmax()
                if torch.isnan(self.lo):
                    self.lo.copy_(lo), self.hi.copy_(hi)
                else:
                    self.lo.add_(self.momentum * (lo - self.lo))
                    self.hi.add_(self.momentum * (hi - self.hi))
            if not torch.isnan(self.lo) and self.samples is None:
                s, z = Q._qparams(self.lo, self.hi, self.a_bits, "affine")
                x = Q._fake_quantize(x, self.a_bits, "affine", scale=s, zero_point=z, kernel=self.kernel)
        w = self.weight()
        if isinstance(self.layer, nn.Linear):
            return F.linear(x, w, self.layer.bias)
        return self.layer._conv_forward(x, w, self.layer.bias)

    def extra_repr(self) -> str:
        return (f"bits={self.bits}, scheme={self.scheme}, axis={self.axis}, a_bits={self.a_bits}, "
                f"range=({float(self.lo):.4g}, {float(self.hi):.4g})")


def _check_common(func, bits, scheme, granularity, a_bits):
    if bits is not None:
        check_bits(bits, "bits", func, high=16)
    Q.check_scheme(scheme, bits, func)
    check_choice(granularity, "granularity", func, GRANULARITIES)
    if a_bits is not None:
        check_bits(a_bits, "a_bits", func, high=16)


def _replace(model: nn.Module, make) -> nn.Module:
    """Swap every Linear / Conv child for make(child), recursively, in place."""
    for name, child in model.named_children():
        if isinstance(child, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            setattr(model, name, make(child))
        else:
            _replace(child, make)
    return model


def quant_layers(model: nn.Module) -> list[tuple[str, QuantLayer]]:
    """The (name, QuantLayer) pairs of a model from `quantize_model` (none for any other model)."""
    check_module(model, "model", "quant_layers")
    return [(n, m) for n, m in model.named_modules() if isinstance(m, QuantLayer)]


def quantize_model(model: nn.Module, bits: int | None = 8, scheme: str = "symmetric",
                   granularity: str = "channel", a_bits: int | None = 8,
                   calibration: str = "minmax", X_calib: torch.Tensor | None = None,
                   percentile: float = 99.99, kernel=None) -> nn.Module:
    """A fake-quantized copy of `model` (the original is not modified), calibrated on X_calib.

    bits / scheme / granularity: the weights' bit width (None: keep float), "symmetric" (torch
      symmetric, see `labkit.quantize`) or "affine", one scale per "tensor" or per output
      "channel" (`quantize`'s axis=None / axis=0: the table in labkit.quantize's docstring).
    a_bits: the bit width of every Linear / Conv input (affine); None keeps them float.
    calibration, X_calib, percentile: how the activation ranges are set (see the module doc);
      X_calib is required when a_bits is given. Train the result with `train.fit` for QAT.
    kernel: the fake-quantize function, fn(x, scale, zero_point, q_min, q_max) → x̂ whose backward is
      the straight-through estimator (scale, zero_point broadcast against x); None: labkit's.
    """
    prunable_layers(model, "model", "quantize_model")
    _check_common("quantize_model", bits, scheme, granularity, a_bits)
    if kernel is not None and not callable(kernel):
        raise TypeError(message("kernel", "quantize_model", "None or a function (x, scale, zero_point, "
                                "q_min, q_max) → x̂", type(kernel).__name__))
    qmodel = _replace(clone(model),
                      lambda m: QuantLayer(m, bits, scheme, granularity, a_bits, kernel=kernel))
    if a_bits is not None:
        if X_calib is None:
            raise ValueError(message("X_calib", "quantize_model", "a tensor of calibration "
                                      "inputs when a_bits is given", None))
        calibrate_(qmodel, X_calib, calibration, percentile)
    return qmodel


def calibrate_(qmodel: nn.Module, X: torch.Tensor, method: str = "minmax",
               percentile: float = 99.99) -> nn.Module:
    """Set every QuantLayer's activation range from the inputs it sees on X, in place."""
    check_module(qmodel, "qmodel", "calibrate_")
    layers = quant_layers(qmodel)
    if not layers:
        raise ValueError(message("qmodel", "calibrate_", "a model from quantize_model",
                                  type(qmodel).__name__))
    if not isinstance(X, torch.Tensor) or not X.is_floating_point() or len(X) == 0:
        raise TypeError(message("X", "calibrate_", "a non-empty floating-point torch.Tensor",
                                 type(X).__name__))
    check_finite(X, "X", "calibrate_")      # a NaN range reads as "not calibrated": float activations
    check_choice(method, "method", "calibrate_", CALIBRATIONS)
    p = check_float(percentile, "percentile", "calibrate_", 50, 100, closed="right")
    for _, m in layers:
        m.samples = []
    try:
        predict(qmodel, X)
    finally:
        samples = {n: torch.cat(m.samples) for n, m in layers if m.a_bits is not None}
        for _, m in layers:
            m.samples = None
    for n, m in layers:
        if m.a_bits is not None:
            lo, hi = calibration_range(samples[n], m.a_bits, method, p)
            m.lo.fill_(lo), m.hi.fill_(hi)
    return qmodel


def calibration_range(v: torch.Tensor, bits: int, method: str = "minmax",
                      percentile: float = 99.99, grid: int = 50) -> tuple[float, float]:
    """(lo, hi) for the values v by `method` (see the module doc); affine `bits`-bit grid."""
    check_tensor(v, "v", "calibration_range")
    bits = check_bits(bits, "bits", "calibration_range", high=16)
    check_choice(method, "method", "calibration_range", CALIBRATIONS)
    p = check_float(percentile, "percentile", "calibration_range", 50, 100, closed="right")
    if v.numel() == 0:
        raise ValueError(message("v", "calibration_range", "a non-empty tensor", "an empty tensor"))
    check_finite(v, "v", "calibration_range")
    v = v.detach().reshape(-1).float()
    lo, hi = float(v.min()), float(v.max())
    if method == "percentile":
        sub = v[::max(1, len(v) // 1_000_000)]                    # torch.quantile's size limit
        lo, hi = (float(t) for t in torch.quantile(sub, torch.tensor([1 - p / 100, p / 100])))
    elif method == "mse":
        alphas = torch.linspace(1.0 / grid, 1.0, grid)            # α = 1 is min-max
        errors = []
        for a in alphas:
            s, z = Q.qparams(a * lo, a * hi, bits, "affine")
            errors.append(float(((Q.fake_quantize(v, bits, "affine", scale=s, zero_point=z)
                                  - v) ** 2).mean()))
        a = float(alphas[min(range(grid), key=errors.__getitem__)])
        lo, hi = a * lo, a * hi
    return lo, hi


def quantize_weights(model: nn.Module, bits: int | dict[str, int] = 8, scheme: str = "symmetric",
                     granularity: str = "channel", method: str = "linear",
                     seed: int = 0) -> nn.Module:
    """A plain copy of `model` whose Linear / Conv weights are replaced by their quantized values.

    bits: one width for all layers, or {layer name: bits} (`validate.per_layer`: a layer not
      named stays float, an unknown name is a ValueError).
    method: "linear" (`quantize.fake_quantize`) or "kmeans" (`quantize.kmeans`, 2^bits shared
    values per layer; scheme and granularity do not apply). Activations stay float.
    """
    layers = prunable_layers(model, "model", "quantize_weights")
    check_choice(method, "method", "quantize_weights", ("linear", "kmeans"))
    _check_common("quantize_weights", None, scheme, granularity, None)
    seed = check_int(seed, "seed", "quantize_weights", low=0)
    widths = per_layer(bits, [n for n, _ in layers], functools.partial(check_bits, high=16),
                       "bits", "quantize_weights")
    out = clone(model)
    mods = dict(out.named_modules())
    with torch.no_grad():
        for n, b in widths.items():
            w = mods[n].weight
            if method == "kmeans":
                c, idx = Q.kmeans(w, b, seed=seed)
                w.copy_(c[idx])
            else:
                w.copy_(Q.fake_quantize(w, b, scheme, AXES[granularity]))
    return out
