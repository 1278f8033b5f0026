"""XNNPACK's int8 arithmetic, emulated bit for bit in PyTorch.

`pt2e.quantize_pt2e` returns a graph of quantize → dequantize → fp32 op → quantize: the *reference*
meaning of int8, where each op computes in float32 on dequantized values and rounds once. The `.pte`
that `mobile.export` lowers runs XNNPACK's integer kernels instead. They round in other places, so
about 1 value in 10⁴ lands one level apart after MobileNetV2's first convolution, and through 52
layers the logits drift enough to flip a near-tie (the `.pte` and the reference then disagree on
the top-1 of ~4 % of photos). `emulate(q)` runs the same graph with XNNPACK's arithmetic, so its
outputs equal the program's bit for bit (tested against ExecuTorch 1.5.1 on x86-64 AVX2).

Notation: x_q, z_x, s_x an input's int8 values, zero point and scale; y for the output; rne rounds
half to even (the CPU's default), f32(·) rounds to float32 after each operation.

**Convolution and linear** (qs8 input × qc8w per-channel symmetric weights W_q, s_W; XNNPACK's
"fp32" requantization, src/qs8-gemm/MRx8c8-avx2.c.in, src/operators/convolution-nhwc.c):

    b_q[c] = rne(f32(b[c] · f32(1 / f32(s_W[c] · s_x))))        int32, by ExecuTorch at export
    acc[c] = b_q[c] + Σ (x_q − z_x) · W_q[c]                     int32, exact
    m[c]   = f32(f32(s_x · s_W[c]) / s_y)                        at operator creation
    y_q[c] = clamp(rne(min(f32(f32(acc[c]) · m[c]), q_max − z_y)) + z_y, q_min, q_max)

**Add** (src/qs8-vadd, src/microparams-init.c), fixed point with a shared shift:

    m_a = f32(s_a / s_y), m_b likewise;  shift = 20 − ⌊log₂ max(m_a, m_b)⌋
    M_a = rne(m_a · 2^shift), M_b likewise                       (int32, < 2²¹)
    y_q = clamp(⌊(2^(shift−1) − M_a z_a − M_b z_b + M_a a_q + M_b b_q) / 2^shift⌋ + z_y, −128, 127)

**Global average pooling** (mean over H × W = N positions, src/operators/reduce-nd.c), in float32;
exact ties round half to even (measured: 111 of 111 ties on 16×16 maps; for 7×7 there are none):

    k = f32(f32(s_x / s_y) · f32(1/N)),   z' = f32(z_y − f32(N z_x · k))
    y_q = clamp(rne(f32(f32(Σ x_q) · k) + z'), −128, 127)

**ReLU6 / ReLU** with the same (s, z) on both sides (how `pt2e` calibrates them) clamp the integers
to [q(low), q(high)], q(v) = rne(f32(f32(v / s) + z)) — fused into the layer before it by XNNPACK.
A ReLU the quantizer fuses into a conv, linear or add (no quantize between them) raises that op's
q_min to q(0) = z_y.
Flatten and dropout keep (s, z) and the integers. Any other op runs as in the reference graph and is
listed in `Emulated.reference_ops`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..validate import accepts, check_finite, check_float, check_int, message
from ._fx import CLAMPS as _CLAMPS, op as _op

_Q = "quantize_per_tensor"
_KERNELS = {"conv2d": "_layer", "linear": "_layer", "add": "_add", "adaptive_avg_pool2d": "_mean",
            **{op: "_clamp" for op in _CLAMPS}}
_EXACT = ("flatten", "dropout", "view", "reshape", "squeeze", "unsqueeze")   # keep (s, z) and the integers
f32 = np.float32


# ---------------------------------------------------------------- integer kernels (pure)
# Integer tensors are held in float32 (exact for int8 values) or float64 (exact for int32 sums).
# Each public kernel checks its arguments and calls its unchecked twin (_bias_int32, ...), which
# the interpreter calls on the values it read from a quantized graph.
def _scale(value, name: str, func: str) -> float:
    """A quantization scale: a finite float > 0."""
    value = check_float(value, name, func, low=0, closed="neither")
    if not math.isfinite(value):
        raise ValueError(message(name, func, "a finite float > 0", value))
    return value


def _scales(t, name: str, func: str) -> torch.Tensor:
    """Per-channel scales: a non-empty floating tensor of finite values > 0."""
    check_finite(t, name, func)
    if t.numel() == 0 or not bool((t > 0).all()):
        raise ValueError(message(name, func, "a non-empty tensor of scales > 0", t.tolist()))
    return t


def _int_range(z, z_name: str, q_min, q_max, func: str) -> None:
    """q_min ≤ z ≤ q_max, 8-bit integers (int8 or uint8: XNNPACK's qs8 and qu8)."""
    q_min = check_int(q_min, "q_min", func, low=-128, high=255)
    q_max = check_int(q_max, "q_max", func, low=q_min, high=255)
    check_int(z, z_name, func, low=q_min, high=q_max)


def _zero_point(z, name: str, func: str) -> None:
    check_int(z, name, func, low=-128, high=255)


def bias_int32(bias: torch.Tensor, s_w: torch.Tensor, s_x: float) -> torch.Tensor:
    """b_q = rne(b · (1 / (s_W · s_x))), computed in float32 as ExecuTorch computes the int32 bias;
    returned as float64 (exact integers)."""
    check_finite(bias, "bias", "bias_int32")
    _scales(s_w, "s_w", "bias_int32")
    s_x = _scale(s_x, "s_x", "bias_int32")
    if bias.shape != s_w.shape:
        raise ValueError(message("bias", "bias_int32", f"one value per channel, shaped like s_w "
                                  f"{tuple(s_w.shape)}", f"shape {tuple(bias.shape)}"))
    return _bias_int32(bias, s_w, s_x)


def _bias_int32(bias, s_w, s_x):
    scale = s_w.float() * s_x                        # float32 tensor × Python float: float32
    return torch.round(bias.float() * (1.0 / scale)).double()


def multiplier(s_x: float, s_w: torch.Tensor, s_y: float) -> torch.Tensor:
    """m = f32(f32(s_x · s_W) / s_y), per output channel."""
    s_x = _scale(s_x, "s_x", "multiplier")
    _scales(s_w, "s_w", "multiplier")
    s_y = _scale(s_y, "s_y", "multiplier")
    return _multiplier(s_x, s_w, s_y)


def _multiplier(s_x, s_w, s_y):
    return torch.tensor(s_x, dtype=torch.float32) * s_w.float() / torch.tensor(s_y, dtype=torch.float32)


def requantize(acc: torch.Tensor, m: torch.Tensor, z_y: int, q_min: int, q_max: int) -> torch.Tensor:
    """XNNPACK's fp32 requantization of int32 accumulators `acc` (exact, float32 or 64) by multipliers `m`
    (float32, broadcastable): the int8 values, as float32."""
    check_finite(acc, "acc", "requantize")
    _scales(m, "m", "requantize")
    _int_range(z_y, "z_y", q_min, q_max, "requantize")
    return _requantize(acc, m, z_y, q_min, q_max)


def _requantize(acc, m, z_y, q_min, q_max):
    y = torch.clamp_max(acc.float() * m, float(q_max - z_y))
    return (torch.round(y) + z_y).clamp_(q_min, q_max)


@accepts(large="scales are only divided: s_a = s_b = s_y = 10**9 give m = 1, so M = 2**20 and "
               "shift 20, exactly as for 1.0")
def add_multipliers(s_a: float, s_b: float, s_y: float) -> tuple[int, int, int]:
    """(M_a, M_b, shift) of XNNPACK's int8 add: M = rne(f32(s / s_y) · 2^shift)."""
    s_a = _scale(s_a, "s_a", "add_multipliers")
    s_b = _scale(s_b, "s_b", "add_multipliers")
    s_y = _scale(s_y, "s_y", "add_multipliers")
    return _add_multipliers(s_a, s_b, s_y)


def _add_multipliers(s_a, s_b, s_y):
    m_a, m_b = f32(s_a) / f32(s_y), f32(s_b) / f32(s_y)
    exponent = int(np.array(max(abs(m_a), abs(m_b)), dtype=f32).view(np.uint32) >> 23) - 127
    shift = 20 - exponent
    return round(float(m_a) * 2**shift), round(float(m_b) * 2**shift), shift   # ×2^shift is exact


def add(a, z_a, b, z_b, multipliers, z_y, q_min=-128, q_max=127) -> torch.Tensor:
    """y_q = ⌊(2^(shift−1) − M_a z_a − M_b z_b + M_a a + M_b b) / 2^shift⌋ + z_y, clamped."""
    check_finite(a, "a", "add")
    _zero_point(z_a, "z_a", "add")
    check_finite(b, "b", "add")
    _zero_point(z_b, "z_b", "add")
    if a.shape != b.shape:
        raise ValueError(message("b", "add", f"int8 values shaped like a {tuple(a.shape)}",
                                  f"shape {tuple(b.shape)}"))
    if (not isinstance(multipliers, tuple) or len(multipliers) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in multipliers)):
        raise TypeError(message("multipliers", "add", "the (M_a, M_b, shift) ints of add_multipliers",
                                 multipliers))
    _int_range(z_y, "z_y", q_min, q_max, "add")
    return _add_int8(a, z_a, b, z_b, multipliers, z_y, q_min, q_max)


def _add_int8(a, z_a, b, z_b, multipliers, z_y, q_min=-128, q_max=127):
    m_a, m_b, shift = multipliers
    bias = 2 ** (shift - 1) - m_a * z_a - m_b * z_b
    acc = bias + a.double() * m_a + b.double() * m_b          # < 2^31: exact in float64
    return (torch.floor(acc / 2**shift) + z_y).float().clamp_(q_min, q_max)


def mean(x, z_x, s_x, s_y, z_y, q_min=-128, q_max=127) -> torch.Tensor:
    """Global average pooling of int8 values x (N, C, H, W) → (N, C, 1, 1), as XNNPACK's reduce."""
    check_finite(x, "x", "mean")
    if x.ndim != 4 or x.shape[2] * x.shape[3] == 0:
        raise ValueError(message("x", "mean", "int8 values (N, C, H, W) with H·W ≥ 1",
                                  f"shape {tuple(x.shape)}"))
    _zero_point(z_x, "z_x", "mean")
    s_x = _scale(s_x, "s_x", "mean")
    s_y = _scale(s_y, "s_y", "mean")
    _int_range(z_y, "z_y", q_min, q_max, "mean")
    return _mean_int8(x, z_x, s_x, s_y, z_y, q_min, q_max)


def _mean_int8(x, z_x, s_x, s_y, z_y, q_min=-128, q_max=127):
    n = x.shape[2] * x.shape[3]
    k = f32(f32(s_x) / f32(s_y)) * f32(f32(1.0) / f32(n))
    z = f32(z_y) - f32(f32(n * z_x) * k)
    total = x.double().sum((2, 3), keepdim=True).float()        # the int32 sum, converted to float32 (rne)
    y = total * torch.tensor(k) + torch.tensor(z)
    return torch.round(y).clamp_(q_min, q_max)


def clamp_bounds(low: float, high: float | None, s: float, z: int, q_min: int, q_max: int) -> tuple[int, int]:
    """[q(low), q(high)] with q(v) = rne(f32(f32(v / s) + z)), within [q_min, q_max]."""
    low = check_float(low, "low", "clamp_bounds")
    if high is not None:
        high = check_float(high, "high", "clamp_bounds", low=low)
    s = _scale(s, "s", "clamp_bounds")
    _int_range(z, "z", q_min, q_max, "clamp_bounds")
    return _clamp_bounds(low, high, s, z, q_min, q_max)


def _clamp_bounds(low, high, s, z, q_min, q_max):
    def q(v):
        return int(np.rint(np.clip(f32(f32(v) / f32(s)) + f32(z), q_min, q_max)))

    return q(low), q_max if high is None else q(high)


# ---------------------------------------------------------------- the interpreter
class _Emulator(torch.fx.Interpreter):
    """Runs a converted PT2E graph; the `quantize` after each conv, linear, add, average pool or
    clamp is computed from the integers of its inputs with XNNPACK's arithmetic."""

    def __init__(self, gm, reference_ops: set):
        super().__init__(gm)
        self.ints = {}                  # quantize node → its int8 values (float32)
        self.reference_ops = reference_ops

    def run_node(self, node):
        op = _op(node)
        if op == _Q and (head := self._head(node)) is not None:
            self.ints[node] = getattr(self, _KERNELS[_op(head)])(head, node)
            return self.ints[node].to(torch.int8)
        if self._in_chain(node) or (op.startswith("dequantize") and self._unused(node)):
            return None                                        # computed by the quantize after it
        if op == _Q and node.args[0].op == "call_function" and _op(node.args[0]) not in _EXACT:
            self.reference_ops.add(_op(node.args[0]))
        out = super().run_node(node)
        if op == _Q:
            self.ints[node] = out.float()
        return out

    def _unused(self, dq) -> bool:
        return all(self._tail(u) is not None for u in dq.users)

    def _in_chain(self, node) -> bool:
        """Whether `node` is an op of an emulated chain (computed when its quantize runs)."""
        if node.op != "call_function":
            return False
        if _op(node) in ("relu", "relu_") and self._tail(node.args[0]) is not None:
            return True                                        # the ReLU fused into the op before it
        return self._tail(node) is not None

    @staticmethod
    def _only_user(node):
        return next(iter(node.users)) if len(node.users) == 1 else None

    def _tail(self, node):
        """The quantize that ends the emulated chain starting at op `node` — node → quantize, or for
        conv/linear/add node → ReLU → quantize (the quantizer fuses that ReLU) — else None. A ReLU
        inside such a chain is its own chain's member, not a head."""
        if node.op != "call_function" or _op(node) not in _KERNELS or not self._reads_ints(node):
            return None
        user = self._only_user(node)
        if user is not None and _op(user) in ("relu", "relu_") and _op(node) in ("conv2d", "linear", "add"):
            user = self._only_user(user)
        return user if user is not None and _op(user) == _Q else None

    def _head(self, q):
        """The op that starts the emulated chain ending at quantize `q`, or None."""
        op = q.args[0]
        if op.op != "call_function":
            return None
        if _op(op) in ("relu", "relu_") and self._tail(op.args[0]) is q:
            return op.args[0]
        return op if self._tail(op) is q else None

    def _reads_ints(self, node) -> bool:
        """Whether op `node` reads only dequantized int8 values (and its emulation applies)."""
        x = node.args[0]
        if _op(x) != "dequantize_per_tensor":
            return False
        if _op(node) in ("conv2d", "linear"):
            return _op(node.args[1]) == "dequantize_per_channel"
        if _op(node) == "add":
            return len(node.args) == 2 and not node.kwargs and _op(node.args[1]) == "dequantize_per_tensor"
        if _op(node) == "adaptive_avg_pool2d":
            return tuple(node.args[1]) == (1, 1)
        q = self._only_user(node)                              # a clamp must keep (s, z)
        return q is not None and _op(q) == _Q and tuple(q.args[1:3]) == tuple(x.args[1:3])

    def _int(self, dq):
        """(integers, s, z) behind a dequantize_per_tensor node."""
        return self.ints[dq.args[0]], float(dq.args[1]), int(dq.args[2])

    @staticmethod
    def _out(q):
        return float(q.args[1]), int(q.args[2]), int(q.args[3]), int(q.args[4])

    def _out_range(self, op, q):
        """(s_y, z_y, q_min, q_max) of quantize `q`; a ReLU fused after `op` raises q_min to q(0) = z_y."""
        s_y, z_y, q_min, q_max = self._out(q)
        return s_y, z_y, (max(q_min, z_y) if q.args[0] is not op else q_min), q_max

    def _layer(self, op, q):
        x, s_x, z_x = self._int(op.args[0])
        dq_w = op.args[1]
        w = self.fetch_attr(dq_w.args[0].target)                                # (C_out, C_in/g, kH, kW) int8
        s_w = self.fetch_attr(dq_w.args[1].target)                              # (C_out,)
        bias = self.fetch_attr(op.args[2].target) if len(op.args) > 2 and op.args[2] is not None else None
        s_y, z_y, q_min, q_max = self._out_range(op, q)
        shape = (-1, 1, 1) if _op(op) == "conv2d" else (-1,)
        x = x - z_x
        b_q = _bias_int32(bias, s_w, s_x).view(shape) if bias is not None else torch.zeros(1, dtype=torch.float64)
        # every partial sum is an integer of magnitude ≤ max|x − z_x| · max_c Σ|W_q[c]| (+ |b_q|): below
        # 2^24, float32 holds each exactly, in any summation order — else compute in float64
        bound = x.abs().max().item() * w.abs().flatten(1).sum(1).max().item() + b_q.abs().max().item()
        dtype = torch.float32 if bound < 2**24 else torch.float64
        x, w = x.to(dtype), w.to(dtype)
        acc = F.conv2d(x, w, None, *op.args[3:]) if _op(op) == "conv2d" else F.linear(x, w)
        return _requantize(acc + b_q.to(dtype), _multiplier(s_x, s_w, s_y).view(shape), z_y, q_min, q_max)

    def _add(self, op, q):
        (a, s_a, z_a), (b, s_b, z_b) = self._int(op.args[0]), self._int(op.args[1])
        s_y, z_y, q_min, q_max = self._out_range(op, q)
        return _add_int8(a, z_a, b, z_b, _add_multipliers(s_a, s_b, s_y), z_y, q_min, q_max)

    def _mean(self, op, q):
        x, s_x, z_x = self._int(op.args[0])
        s_y, z_y, q_min, q_max = self._out(q)
        return _mean_int8(x, z_x, s_x, s_y, z_y, q_min, q_max)

    def _clamp(self, op, q):
        x, s, z = self._int(op.args[0])
        low, high = (0.0, None) if _op(op).startswith("relu") else (float(op.args[1]), float(op.args[2]))
        return x.clamp(*_clamp_bounds(low, high, s, z, *self._out(q)[2:]))


class Emulated(nn.Module):
    """`emulate`'s module: `quantized` computed with XNNPACK's int8 arithmetic. `reference_ops`: the
    ops (seen so far) that no XNNPACK kernel here emulates, run as in the reference graph."""

    def __init__(self, quantized: torch.fx.GraphModule):
        super().__init__()
        self.quantized = quantized
        self.reference_ops: set[str] = set()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _Emulator(self.quantized, self.reference_ops).run(x)


def emulate(quantized) -> Emulated:
    """A module that computes `quantized` (`pt2e.quantize_pt2e`'s graph) as the `.pte` that
    `mobile.export` lowers from it does on XNNPACK: the same outputs, bit for bit."""
    if not isinstance(quantized, torch.fx.GraphModule):
        raise TypeError(message("quantized", "emulate", "a torch.fx.GraphModule from labkit.pt2e.quantize_pt2e",
                                 type(quantized).__name__))
    return Emulated(quantized)
