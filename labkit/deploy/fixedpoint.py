"""Integer-only requantization: the real multiplier M = s_w·s_x/s_y as a fixed-point M₀·2⁻ⁿ.

Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
Inference", https://arxiv.org/abs/1712.05877, §2.2. An int8 layer accumulates exact int32 sums and
must scale them to the output's int8 grid:

    acc[c] = b_q[c] + Σ_k (x_q[k] − z_x) · w_q[c, k]                 int32, exact
    y_q[c] = z_y + M[c] · acc[c],       M[c] = s_w[c] · s_x / s_y      (eq. 4/5)

M is the only non-integer. Empirically M ∈ (0, 1), so the paper writes it M = 2⁻ⁿ · M₀ with
M₀ ∈ [0.5, 1) held as the int32 round(M₀ · 2³¹) ∈ [2³⁰, 2³¹) and n ≥ 0 a right shift. Then
y_q = z_y + M · acc is two integer steps, as gemmlowp computes them (fixedpoint.h; TFLite's
MultiplyByQuantizedMultiplier):

    h   = ⌊acc · M0 / 2³¹ + 1/2⌋        SaturatingRoundingDoublingHighMul: the high 32 bits of the
                                        64-bit product, ties rounded up (toward +∞)
    y_q = clamp(z_y + round(h / 2ⁿ), q_min, q_max)     RoundingDivideByPOT: ties away from zero

`fixed_point_multiplier(M) → (M0, n)`; `requantize(acc, M0, n, z_y)` → y_q. Before the last
rounding, h / 2ⁿ differs from M · acc by at most (1/2 + |acc|·2⁻³²)·2⁻ⁿ (h's rounding, and M0's);
so against the real requantization clamp(z_y + round(M · acc)) it is off by at most one level,
and only where M · acc lies that close to a rounding tie (tests/test_fixedpoint.py).
XNNPACK's convolutions instead multiply by M in float32 (`labkit.xnnpack.requantize`); its adds
use a fixed-point multiplier like this one (`xnnpack.add_multipliers`).
"""
from __future__ import annotations

import math

import torch

from ..validate import check_float, check_int, check_tensor, message

M_LOW = 2.0 ** -32          # below it n > 31: the smallest M the shift of gemmlowp can reach
Q31 = 2 ** 31


def fixed_point_multiplier(M: float) -> tuple[int, int]:
    """(M0, n) with M ≈ M0 · 2⁻³¹ · 2⁻ⁿ: M0 = round(M₀ · 2³¹) an int32 in [2³⁰, 2³¹), M₀ ∈ [0.5, 1)
    (ties away from zero, as TFLite's QuantizeMultiplier). When M₀ · 2³¹ rounds up to 2³¹, which
    int32 cannot hold, M0 = 2³⁰ and n is one less (n = −1, a left shift, only for M > 1 − 2⁻³²)."""
    M = check_float(M, "M", "fixed_point_multiplier", low=M_LOW, high=1, closed="left")
    m0, exponent = math.frexp(M)                 # M = m0 · 2^exponent, m0 ∈ [0.5, 1), exponent ≤ 0
    M0 = math.floor(m0 * Q31 + 0.5)              # exact: m0 · 2³¹ is a double with ≤ 53 bits
    n = -exponent
    if M0 == Q31:
        M0, n = Q31 // 2, n - 1
    return M0, n


def _shaped(value, name: str, func: str, low: int, high: int, acc: torch.Tensor) -> torch.Tensor:
    """An int in [low, high], or an integer tensor of such values broadcastable to acc (per channel)."""
    if isinstance(value, torch.Tensor):
        if value.dtype.is_floating_point or value.dtype.is_complex or value.dtype == torch.bool:
            raise TypeError(message(name, func, f"an int or an integer tensor of values in [{low}, {high}]",
                                    f"dtype {value.dtype}"))
        if value.numel() == 0 or not bool(((value >= low) & (value <= high)).all()):
            raise ValueError(message(name, func, f"integers in the range [{low}, {high}]", value.tolist()))
        try:
            torch.broadcast_shapes(value.shape, acc.shape)
        except RuntimeError:
            raise ValueError(message(name, func, f"broadcastable to acc's shape {tuple(acc.shape)}",
                                     f"shape {tuple(value.shape)}")) from None
        return value.long()
    return torch.tensor(check_int(value, name, func, low=low, high=high), dtype=torch.int64)


def requantize(acc: torch.Tensor, M0, n, z_y: int, q_min: int = -128, q_max: int = 127) -> torch.Tensor:
    """y_q = clamp(z_y + round(⌊acc · M0 / 2³¹ + 1/2⌋ / 2ⁿ), q_min, q_max), the outer round with ties
    away from zero: gemmlowp's two steps, in exact integer arithmetic (int64). acc: int32 accumulators (an integer tensor, any
    shape); M0, n: `fixed_point_multiplier`'s ints, or integer tensors broadcastable to acc (one
    per output channel). Returns int64 values in [q_min, q_max]."""
    func = "requantize"
    check_tensor(acc, "acc", func, floating=False)
    if acc.dtype.is_floating_point or acc.dtype.is_complex or acc.dtype == torch.bool:
        raise TypeError(message("acc", func, "an integer tensor (int32 accumulators)", f"dtype {acc.dtype}"))
    lo, hi = (int(acc.min()), int(acc.max())) if acc.numel() else (0, 0)
    if lo < -Q31 or hi >= Q31:
        raise ValueError(message("acc", func, "int32 values", f"range [{lo}, {hi}]"))
    M0 = _shaped(M0, "M0", func, Q31 // 2, Q31 - 1, acc)
    n = _shaped(n, "n", func, -1, 31, acc)
    q_min = check_int(q_min, "q_min", func, low=-Q31, high=Q31 - 1)
    q_max = check_int(q_max, "q_max", func, low=q_min, high=Q31 - 1)
    z_y = check_int(z_y, "z_y", func, low=q_min, high=q_max)
    x = acc.long() * torch.where(n < 0, 2, 1)              # n = −1: shift left first (TFLite's order)
    product = x * M0                                        # |x·M0| < 2³² · 2³¹: exact in int64
    nudge = torch.where(product >= 0, 1 << 30, 1 - (1 << 30))
    h = torch.div(product + nudge, Q31, rounding_mode="trunc")      # SaturatingRoundingDoublingHighMul
    right = n.clamp(min=0)
    mask = (1 << right) - 1                                 # RoundingDivideByPOT(h, right)
    threshold = (mask >> 1) + (h < 0).long()
    y = (h >> right) + ((h & mask) > threshold).long()
    return (y + z_y).clamp(q_min, q_max)
