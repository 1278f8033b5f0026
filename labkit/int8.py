"""A real int8 model on an integer runtime: torch.ao.quantization eager mode (fbgemm / x86 / onednn).

Fake quantization (`labkit.ptq`) only *simulates* integers: it adds a quantize-dequantize pass
in float32 around every layer, so it is slower than the float model, never faster. Speed and
memory come only from a runtime that stores int8 weights and multiplies integers:

    y_q = requant( Σ_k (x_q − z_x)(W_q − z_w) ),   int8 × int8 → int32 accumulate (VNNI on x86)

`to_int8` builds one with PyTorch's eager flow: QuantStub → fuse Linear/Conv + ReLU → prepare
(observers) → calibrate on sample inputs → convert (quantized::linear_relu, ...) → DeQuantStub.
The qconfig is torch's default for the engine: weights int8 symmetric per channel
(PerChannelMinMaxObserver, the same numbers as `quantize.quantize(w, 8, "symmetric", axis=0)`),
activations uint8 affine from a histogram observer.
"""
from __future__ import annotations

import io
import warnings

import torch
from torch import nn

from .validate import message, check_choice, check_int, check_module
from .prune import clone

ENGINES = tuple(e for e in ("x86", "fbgemm", "onednn", "qnnpack")
                if e in torch.backends.quantized.supported_engines)


class Int8Model(nn.Module):
    """QuantStub → model → DeQuantStub: float in, float out, integers inside."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.model = model
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x):
        return self.dequant(self.model(self.quant(x)))


def _fuse_pairs(model: nn.Module) -> list[list[str]]:
    """Names of [Linear|Conv2d, ReLU] neighbours inside every nn.Sequential, for fuse_modules."""
    pairs = []
    for prefix, seq in model.named_modules():
        if isinstance(seq, nn.Sequential):
            kids = list(seq.named_children())
            for (n1, a), (n2, b) in zip(kids, kids[1:]):
                if isinstance(a, (nn.Linear, nn.Conv2d)) and isinstance(b, nn.ReLU):
                    pre = f"{prefix}." if prefix else ""
                    pairs.append([pre + n1, pre + n2])
    return pairs


def to_int8(model: nn.Module, X_calib: torch.Tensor, engine: str = "x86",
            batch_size: int = 256) -> nn.Module:
    """An int8 copy of `model` (not modified) for torch's quantized CPU kernels, calibrated on
    X_calib. Works for models whose forward uses only modules torch can quantize (LeNets)."""
    check_module(model, "model", "to_int8")
    if not isinstance(X_calib, torch.Tensor) or not X_calib.is_floating_point() or not len(X_calib):
        raise TypeError(message("X_calib", "to_int8", "a non-empty floating-point torch.Tensor",
                                 type(X_calib).__name__))
    check_choice(engine, "engine", "to_int8", ENGINES)
    batch_size = check_int(batch_size, "batch_size", "to_int8", low=1)
    torch.backends.quantized.engine = engine
    body = clone(model).cpu().eval()
    pairs = _fuse_pairs(body)
    if pairs:
        body = torch.ao.quantization.fuse_modules(body, pairs)
    qm = Int8Model(body).eval()
    qm.qconfig = torch.ao.quantization.get_default_qconfig(engine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # eager mode's deprecation notices
        torch.ao.quantization.prepare(qm, inplace=True)
        with torch.no_grad():
            for i in range(0, len(X_calib), batch_size):
                qm(X_calib[i:i + batch_size].cpu())
        torch.ao.quantization.convert(qm, inplace=True)
    return qm


def serialized_bytes(model: nn.Module) -> int:
    """Bytes of torch.save(model.state_dict()): what the model costs on disk."""
    check_module(model, "model", "serialized_bytes")
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()
