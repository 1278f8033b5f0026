"""Real int4 weights: group-wise 4-bit Linears run by ONNX Runtime's `MatMulNBits` kernel.

Weight-only quantization speeds up decoding because one generated token reads every weight once
and does ~2 FLOPs per weight: the step is bound by memory bandwidth, so fewer bytes per weight
is less time (the roofline). A kernel must then *read* 4-bit weights and dequantize them on the
fly; `MatMulNBits` (com.microsoft domain, https://github.com/microsoft/onnxruntime/blob/main/docs/ContribOperators.md)
does. Its layout for a weight W (N, K) = (out, in) and blocks of g consecutive inputs:

    B       uint8 (N, K/g, g/2)   two codes per byte, element 2i in the low nibble, 2i+1 in the high
    scales  float32 (N · K/g,)    one s per block
    code    u = q + 8 ∈ [1, 15]   (no zero_points input: the kernel's default zero point is 8)
    Ŵ[n, k] = (u − 8) · s

With q = clamp(round(w / s), −7, 7) and s = max|w| / 7 per block, Ŵ is exactly labkit.quantize's
`groupwise(W, 4, g, "restricted")` (the GPTQ / AWQ symmetric grid), so the kernel's output can
be checked against labkit's emulation. Symmetric (no zero point) also avoids ORT's open bug with
asymmetric 4-bit at accuracy_level=4 on AVX2-only CPUs; accuracy_level 0 (fp32 compute) is used.
Storage: 4 + 32/g bits per weight (fp32 scales), 5 at g = 32: 6.4× smaller than fp32.

    blob = int4.mlp_model(gpt.h[0].mlp, group_size=32)            # ONNX bytes, int4 weights
    sess = int4.session(blob)                                       # threads=1
    y = sess.run(None, {"x": x.numpy()})[0]                         # x (M, C) float32
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..quantize import group_qparams
from ..validate import check_bool, check_int, check_module, check_tensor, message

OPSET = 17


def pack(W: torch.Tensor, group_size: int = 32) -> dict:
    """W (N, K) → {"B": uint8 (N, K/g, g/2), "scales": float32 (N·K/g,), "W_hat": (N, K) float32,
    the dequantized weight the kernel computes with}. K must be a multiple of g, g a power of 2 ≥ 16."""
    check_tensor(W, "W", "pack")
    g = check_int(group_size, "group_size", "pack", low=16, high=1 << 16)
    if g & (g - 1):
        raise ValueError(message("group_size", "pack", "a power of 2 ≥ 16 (MatMulNBits' block_size)", g))
    if W.ndim != 2 or W.numel() == 0 or W.shape[1] % g or not bool(torch.isfinite(W).all()):
        raise ValueError(message("W", "pack", f"a finite 2-D weight (N, K) with K a multiple of {g}",
                                 f"shape {tuple(W.shape)}"))
    N, K = W.shape
    x = W.detach().float().reshape(-1, g)                       # (N · K/g, g), one row per block
    s, _ = group_qparams(x, 4, "restricted")                     # (N · K/g, 1), s = max|w| / 7
    q = torch.clamp(torch.round(x * (1.0 / s)), -7, 7)
    u = (q + 8).to(torch.uint8).reshape(N, K // g, g)
    B = (u[..., 0::2] | (u[..., 1::2] << 4)).contiguous()        # low nibble first
    return {"B": B, "scales": s.reshape(-1).contiguous(), "W_hat": (q * s).reshape(N, K)}


def unpack(B: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """The inverse of `pack`'s layout: B uint8 (N, K/g, g/2), scales (N·K/g,) → Ŵ (N, K) float32."""
    check_tensor(B, "B", "unpack", floating=False)
    check_tensor(scales, "scales", "unpack")
    if B.dtype != torch.uint8 or B.ndim != 3 or scales.numel() != B.shape[0] * B.shape[1]:
        raise ValueError(message("B", "unpack", "uint8 (N, K/g, g/2) with scales of N·K/g values",
                                 f"{B.dtype} {tuple(B.shape)}, scales {tuple(scales.shape)}"))
    u = torch.stack([B & 15, B >> 4], dim=-1).reshape(B.shape[0], B.shape[1], -1).float()
    return ((u - 8) * scales.float().reshape(B.shape[0], B.shape[1], 1)).reshape(B.shape[0], -1)


def _linear_nodes(name: str, lin: nn.Linear, x: str, int4: bool, g: int, accuracy_level: int):
    """ONNX nodes and initializers of y = x Wᵀ + b, as MatMulNBits (int4) or MatMul (fp32)."""
    from onnx import helper, numpy_helper

    W = lin.weight.detach().float()
    N, K = W.shape
    inits = [numpy_helper.from_array(lin.bias.detach().float().numpy(), f"{name}_b")]
    if int4:
        p = pack(W, g)
        inits += [numpy_helper.from_array(p["B"].numpy(), f"{name}_B"),
                  numpy_helper.from_array(p["scales"].numpy(), f"{name}_s")]
        mm = helper.make_node("MatMulNBits", [x, f"{name}_B", f"{name}_s"], [f"{name}_mm"], domain="com.microsoft",
                              K=K, N=N, bits=4, block_size=g, accuracy_level=accuracy_level)
    else:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(W.T.numpy()), f"{name}_Wt"))   # (K, N)
        mm = helper.make_node("MatMul", [x, f"{name}_Wt"], [f"{name}_mm"])
    return [mm, helper.make_node("Add", [f"{name}_mm", f"{name}_b"], [f"{name}_y"])], inits


def mlp_model(mlp: nn.Module, int4: bool = True, group_size: int = 32, accuracy_level: int = 0) -> bytes:
    """The GPT's MLP y = c_proj(GELU(c_fc(x))) (exact erf GELU) as a serialized ONNX model with
    input "x" (M, C) float32 and output "y" (M, C): int4 MatMulNBits weights, or fp32 MatMul
    (int4=False) for the baseline. `mlp` has nn.Linear attributes c_fc and c_proj."""
    from onnx import TensorProto, helper

    check_module(mlp, "mlp", "mlp_model")
    check_bool(int4, "int4", "mlp_model")
    g = check_int(group_size, "group_size", "mlp_model", low=16, high=1 << 16)
    level = check_int(accuracy_level, "accuracy_level", "mlp_model", low=0, high=4)
    fc, proj = getattr(mlp, "c_fc", None), getattr(mlp, "c_proj", None)
    if not (isinstance(fc, nn.Linear) and isinstance(proj, nn.Linear)) or fc.bias is None or proj.bias is None:
        raise ValueError(message("mlp", "mlp_model", "a module with nn.Linear c_fc and c_proj (with biases)",
                                 type(mlp).__name__))
    C = fc.in_features
    n1, i1 = _linear_nodes("fc", fc, "x", int4, g, level)
    n2, i2 = _linear_nodes("proj", proj, "gelu", int4, g, level)
    c = [helper.make_tensor(n, TensorProto.FLOAT, [], [v]) for n, v in
         (("inv_sqrt2", 2 ** -0.5), ("one", 1.0), ("half", 0.5))]
    gelu = [helper.make_node("Mul", ["fc_y", "inv_sqrt2"], ["g1"]), helper.make_node("Erf", ["g1"], ["g2"]),
            helper.make_node("Add", ["g2", "one"], ["g3"]), helper.make_node("Mul", ["fc_y", "g3"], ["g4"]),
            helper.make_node("Mul", ["g4", "half"], ["gelu"])]
    graph = helper.make_graph(n1 + gelu + n2, "gpt_mlp",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["M", C])],
                              [helper.make_tensor_value_info("proj_y", TensorProto.FLOAT, ["M", C])],
                              initializer=i1 + i2 + c)
    opsets = [helper.make_opsetid("", OPSET)] + ([helper.make_opsetid("com.microsoft", 1)] if int4 else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model.SerializeToString()


def session(model: bytes, threads: int = 1):
    """An onnxruntime.InferenceSession of serialized ONNX bytes on the CPU, `threads` intra-op threads."""
    import onnxruntime as ort

    if not isinstance(model, (bytes, bytearray)) or not model:
        raise TypeError(message("model", "session", "serialized ONNX bytes (e.g. from mlp_model)", type(model).__name__))
    threads = check_int(threads, "threads", "session", low=1, high=256)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.log_severity_level = 3
    return ort.InferenceSession(bytes(model), opts, providers=["CPUExecutionProvider"])
