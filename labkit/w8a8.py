"""W8A8: int8 weights and int8 activations, and LLM.int8()'s mixed-precision decomposition.

Weight-only quantization leaves X in float; W8A8 quantizes both operands of Y = X Wᵀ
(X (N, in) tokens × channels, W (out, in)), so the product can run on int8 × int8 → int32 units.
The grid is SmoothQuant's and LLM.int8()'s absmax one, q ∈ [−127, 127] ("restricted symmetric" in
labkit.quantize):

    s = max|x| / 127        x̂ = clamp(round(x · (1/s)), −127, 127) · s

exactly torch.fake_quantize_per_tensor_affine(x, s, 0, −127, 127) (and _per_channel_affine). The
max is clamped at 1e-5 as in the SmoothQuant reference. Schemes: weights per output row
("channel") or per tensor; activations dynamic per token ("token": one s per row of X), dynamic
per tensor ("tensor"), or static per tensor ("static": s from calibration maxima, the cheapest at
run time and the most fragile). SmoothQuant's O1, O2, O3 are per-tensor weights with "token",
"tensor", "static" activations. A few input channels with |X_j| 10–100×
the rest (Bondarenko et al. 2021; Dettmers et al. 2022) make any per-token or per-tensor s coarse
for all the others. Two fixes: labkit.smoothquant, and

LLM.int8() (Dettmers et al. 2022, https://arxiv.org/abs/2208.07339): the outlier channels
O = {j : max|X_j| > threshold} (6.0) stay in float, the rest is int8, vector-wise:

    Y = X_O W_Oᵀ  +  diag(s_x) (X_Ō,int8 W_Ō,int8ᵀ) diag(s_w)     s_x (N,) per token, s_w (out,) per row

O is fixed here from calibration maxima (the paper picks it per batch; the outlier channels are
the same in every batch, which is what makes a fixed set, and its bytes, meaningful); W_O is
stored in fp16 as in the paper.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import activations
from .prune import clone
from .validate import check_bits, check_choice, check_finite, check_float, check_module, message

CLAMP = 1e-5                                   # the reference code's floor on maxima and scales
WEIGHT = ("channel", "tensor")
ACT = ("token", "tensor", "static")


def check_absmax(v: torch.Tensor, name: str, func: str, size: int | None = None) -> torch.Tensor:
    """Return v if it is a non-empty 1-D tensor of finite maxima ≥ 0 (of length `size` if given)."""
    check_finite(v, name, func)
    if v.ndim != 1 or not v.numel() or (size is not None and v.numel() != size):
        want = "a 1-D tensor" + (f" of length {size}" if size else " (one value per input channel)")
        raise ValueError(message(name, func, want, f"shape {tuple(v.shape)}"))
    if bool((v < 0).any()):
        raise ValueError(message(name, func, "≥ 0 (a maximum of |x|)", f"min {float(v.min()):g}"))
    return v


def _finite(x, name: str, func: str) -> torch.Tensor:
    check_finite(x, name, func)
    if not x.numel():
        raise ValueError(message(name, func, "a non-empty tensor", "an empty tensor"))
    return x


# ----------------------------------------------------------------------------- int8 fake quant
def absmax_scale(absmax: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """s = max(absmax, 1e-5) / (2^(bits−1) − 1), the scale of the grid [−127, 127] (bits = 8)."""
    _finite(absmax, "absmax", "absmax_scale")
    bits = check_bits(bits, "bits", "absmax_scale", low=2, high=16)
    return absmax.detach().float().clamp(min=CLAMP) / (2 ** (bits - 1) - 1)


def fake_quant(x: torch.Tensor, scale: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """x̂ = clamp(round(x · (1/s)), −q, q) · s, q = 2^(bits−1) − 1; `scale` broadcasts against x."""
    _finite(x, "x", "fake_quant")
    _finite(scale, "scale", "fake_quant")
    bits = check_bits(bits, "bits", "fake_quant", low=2, high=16)
    if not bool((scale > 0).all()):
        raise ValueError(message("scale", "fake_quant", "> 0 everywhere", f"min {float(scale.min()):g}"))
    return _fq(x, scale, bits)


def _fq(x, s, bits):
    q = 2 ** (bits - 1) - 1
    return torch.clamp(torch.round(x * (1.0 / s)), -q, q) * s


def quantize_weight(w: torch.Tensor, granularity: str = "channel", bits: int = 8) -> torch.Tensor:
    """Fake-quantized w (out, in): one absmax scale per output row ("channel") or for all ("tensor")."""
    _finite(w, "w", "quantize_weight")
    check_choice(granularity, "granularity", "quantize_weight", WEIGHT)
    bits = check_bits(bits, "bits", "quantize_weight", low=2, high=16)
    if w.ndim != 2:
        raise ValueError(message("w", "quantize_weight", "a 2-D weight (out, in)", f"shape {tuple(w.shape)}"))
    a = w.detach().abs()
    return _fq(w, absmax_scale(a.amax(1, keepdim=True) if granularity == "channel" else a.amax(), bits), bits)


def quantize_activation(x: torch.Tensor, granularity: str = "token", bits: int = 8,
                        scale: torch.Tensor | None = None) -> torch.Tensor:
    """Fake-quantized x (..., in): dynamic per token ("token": one scale per row over the last
    axis), dynamic per tensor ("tensor"), or static ("static": the calibrated `scale`, required)."""
    _finite(x, "x", "quantize_activation")
    check_choice(granularity, "granularity", "quantize_activation", ACT)
    bits = check_bits(bits, "bits", "quantize_activation", low=2, high=16)
    if granularity == "static":
        if scale is None:
            raise ValueError(message("scale", "quantize_activation", "a calibrated scale for 'static'", None))
        return fake_quant(x, scale, bits)
    return _act(x, granularity, bits, scale)


def _act(x, granularity, bits, scale):
    """`quantize_activation` without the entry checks (per forward pass)."""
    if granularity == "static":
        return _fq(x, scale, bits)
    a = x.detach().abs()
    return _fq(x, absmax_scale(a.amax(-1, keepdim=True) if granularity == "token" else a.amax(), bits), bits)


class W8A8Linear(nn.Module):
    """A Linear whose weight is stored fake-quantized and whose input is fake-quantized each forward.
    act="static" needs act_max (in,) or a float: the calibrated max|X|, s = max / 127."""

    def __init__(self, linear: nn.Linear, weight: str = "channel", act: str = "token", act_max=None, bits: int = 8):
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(message("linear", "W8A8Linear", "an nn.Linear", type(linear).__name__))
        self.weight_granularity = check_choice(weight, "weight", "W8A8Linear", WEIGHT)
        self.act = check_choice(act, "act", "W8A8Linear", ACT)
        self.bits = check_bits(bits, "bits", "W8A8Linear", low=2, high=16)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", quantize_weight(linear.weight.detach(), weight, bits))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())
        scale = None
        if act == "static":
            if act_max is None:
                raise ValueError(message("act_max", "W8A8Linear", "the calibrated max|X| for act='static'", None))
            scale = absmax_scale(torch.as_tensor(act_max, dtype=torch.float32).amax(), bits)
        self.register_buffer("act_scale", scale)

    def forward(self, x):
        x = _act(x, self.act, self.bits, self.act_scale)
        return F.linear(x, self.weight, self.bias)

    def weight_bytes(self, scale_bits: int = 32) -> int:
        """int8 weights + one scale per row (or per tensor) + the static activation scale."""
        n_scales = self.out_features if self.weight_granularity == "channel" else 1
        n_scales += self.act_scale is not None
        return (self.out_features * self.in_features * self.bits + n_scales * scale_bits + 7) // 8


class Int8DecompLinear(nn.Module):
    """LLM.int8(): the input channels with act_max > threshold in float, the rest int8 vector-wise
    (per-token activations × per-row weights). act_max (in,): calibrated max|X_j|."""

    def __init__(self, linear: nn.Linear, act_max: torch.Tensor, threshold: float = 6.0, bits: int = 8,
                 float_bits: int = 16):
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(message("linear", "Int8DecompLinear", "an nn.Linear", type(linear).__name__))
        act_max = check_absmax(act_max, "act_max", "Int8DecompLinear", linear.in_features)
        self.threshold = check_float(threshold, "threshold", "Int8DecompLinear", low=0)
        self.bits = check_bits(bits, "bits", "Int8DecompLinear", low=2, high=16)
        self.float_bits = check_bits(float_bits, "float_bits", "Int8DecompLinear", low=16, high=32)
        if float_bits not in (16, 32):
            raise ValueError(message("float_bits", "Int8DecompLinear", "16 (fp16) or 32", float_bits))
        self.in_features, self.out_features = linear.in_features, linear.out_features
        w = linear.weight.detach()
        outliers = act_max > self.threshold
        self.register_buffer("outliers", outliers)
        self.register_buffer("weight", quantize_weight(w.masked_fill(outliers, 0), "channel", bits))
        keep = torch.float16 if float_bits == 16 else torch.float32                  # stored as fp16
        self.register_buffer("weight_outliers", w[:, outliers].to(keep).float())     # (out, |O|)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def forward(self, x):
        regular = _act(x.masked_fill(self.outliers, 0), "token", self.bits, None)
        return F.linear(regular, self.weight, self.bias) + x[..., self.outliers] @ self.weight_outliers.T

    def weight_bytes(self, scale_bits: int = 32) -> int:
        """int8 weights of the regular channels + a scale per row + the outlier columns in float."""
        k = int(self.outliers.sum())
        bits = self.out_features * ((self.in_features - k) * self.bits + k * self.float_bits + scale_bits)
        return (bits + 7) // 8


def _replace(model, make, names, func):
    check_module(model, "model", func)
    found = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if names is None:
        names = found
    elif not isinstance(names, (list, tuple)) or not set(names) <= set(found) or not names:
        raise ValueError(message("names", func, "None or a non-empty list of Linear names among "
                                 + ", ".join(map(repr, found)), names))
    model = clone(model)
    for name in names:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, make(name, model.get_submodule(name)))
    return model


def _per_name(act_max, names, func):
    if not isinstance(act_max, dict):
        raise TypeError(message("act_max", func, "a dict {Linear name: max|X_j| (in,)}", type(act_max).__name__))
    missing = [n for n in names if n not in act_max]
    if missing:
        raise ValueError(message("act_max", func, "a dict with an entry for every Linear replaced", missing))


def w8a8(model: nn.Module, weight: str = "channel", act: str = "token", act_max: dict | None = None,
         bits: int = 8, names: list[str] | None = None) -> nn.Module:
    """A copy of `model` with its Linears (or those in `names`) replaced by W8A8Linear.
    act="static" needs act_max {name: max|X_j| (in,)} from calibration (`input_absmax`)."""
    check_choice(weight, "weight", "w8a8", WEIGHT)
    check_choice(act, "act", "w8a8", ACT)
    bits = check_bits(bits, "bits", "w8a8", low=2, high=16)

    def make(name, m):
        return W8A8Linear(m, weight, act, act_max[name] if act == "static" else None, bits)

    if act == "static":
        _per_name(act_max, names or [n for n, m in check_module(model, "model", "w8a8").named_modules()
                                     if isinstance(m, nn.Linear)], "w8a8")
    return _replace(model, make, names, "w8a8")


def llm_int8(model: nn.Module, act_max: dict, threshold: float = 6.0, names: list[str] | None = None) -> nn.Module:
    """A copy of `model` with its Linears replaced by Int8DecompLinear (act_max: {name: (in,)})."""
    threshold = check_float(threshold, "threshold", "llm_int8", low=0)
    check_module(model, "model", "llm_int8")
    _per_name(act_max, names or [n for n, m in model.named_modules() if isinstance(m, nn.Linear)], "llm_int8")
    return _replace(model, lambda n, m: Int8DecompLinear(m, act_max[n], threshold), names, "llm_int8")


# ----------------------------------------------------------------------------- measuring
def _call(model, inputs):
    if isinstance(inputs, dict):
        return model(**inputs)
    return model(*inputs) if isinstance(inputs, tuple) else model(inputs)


def _check_inputs(inputs, func):
    if not isinstance(inputs, (torch.Tensor, tuple, dict)):
        raise TypeError(message("inputs", func, "a tensor, a tuple of model arguments or a dict of keyword "
                                "arguments", type(inputs).__name__))


@torch.no_grad()
def input_absmax(model: nn.Module, inputs) -> dict[str, torch.Tensor]:
    """{Linear name: max|X_j| (in,)} of each Linear's input over all tokens of model(inputs)
    (`activations.collect`'s max_abs, for one batch, every Linear)."""
    check_module(model, "model", "input_absmax")
    _check_inputs(inputs, "input_absmax")
    stats = activations.collect(model, [inputs], hessian=False, dtype=torch.float32, exclude=())
    return {name: s.max_abs.float() for name, s in stats.items()}


@torch.no_grad()
def layer_errors(model: nn.Module, qmodel: nn.Module, inputs) -> dict[str, float]:
    """{Linear name: ‖Y − Ŷ‖² / ‖Y‖²}: each Linear of `model` (fp32) against the module of the same
    name in `qmodel` (e.g. w8a8(model)), both fed the fp32 model's input to that Linear, so the
    error is the layer's own and not the error accumulated upstream."""
    check_module(model, "model", "layer_errors")
    check_module(qmodel, "qmodel", "layer_errors")
    _check_inputs(inputs, "layer_errors")
    seen, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            def hook(mod, args, y, name=name):
                seen.setdefault(name, (args[0], y))             # (returning it would replace y)
            hooks.append(m.register_forward_hook(hook))
    try:
        _call(model, inputs)
    finally:
        for h in hooks:
            h.remove()
    errors = {}
    for name, (x, y) in seen.items():
        try:
            y_hat = qmodel.get_submodule(name)(x)
        except AttributeError:
            raise ValueError(message("qmodel", "layer_errors", f"a copy of model with a module {name!r}",
                                     type(qmodel).__name__)) from None
        errors[name] = float(((y - y_hat) ** 2).sum() / (y ** 2).sum().clamp(min=1e-30))
    return errors


def weight_bytes(model: nn.Module, float_bits: int = 32) -> int:
    """Bytes of the Linear weights: float Linears at float_bits, W8A8Linear and Int8DecompLinear by
    their weight_bytes() (biases, the same in every scheme, not counted)."""
    check_module(model, "model", "weight_bytes")
    float_bits = check_bits(float_bits, "float_bits", "weight_bytes", low=8, high=64)
    total = 0
    for m in model.modules():
        if isinstance(m, (W8A8Linear, Int8DecompLinear)):
            total += m.weight_bytes()
        elif isinstance(m, nn.Linear):
            total += m.weight.numel() * float_bits // 8
    return total
