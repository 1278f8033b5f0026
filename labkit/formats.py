"""Low-bit number formats for LLM weights, emulated bit-exactly in float32 ("fake quantization").

A minifloat with M mantissa bits and smallest normal exponent e_min has, in the binade
[2^e, 2^(e+1)), the levels k · 2^(e − M); below 2^e_min the step stays 2^(e_min − M)
(subnormals). Rounding is to nearest, ties to even (IEEE), and every cast here *saturates*:
x is clamped to ±max first (the OCP and NVIDIA rule for weights; torch's casts agree):

    format     bits  e_min  max      values
    fp8_e4m3   8     −6     448      OCP FP8 E4M3 ("fn": no Inf, one NaN code), torch.float8_e4m3fn
    fp8_e5m2   8     −14    57344    OCP FP8 E5M2 (IEEE-like, Inf/NaN codes unused), torch.float8_e5m2
    fp4_e2m1   4     0      6        ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}, torch.float4_e2m1fn_x2

A weight format is an element grid plus scales: x̂ = s · cast(x / s), one s per block of
consecutive values along the last axis (`fake_quantize(x, fmt)`; a short last block is padded
with zeros, which change no absmax):

    int8, int4  s = absmax / (2^(b−1) − 1) in fp16 per block of 32, q ∈ ±(2^(b−1) − 1)
                (GGML Q8_0's layout; the "INT4-g32" of the format papers)
    fp8_*, fp4_e2m1   one fp32 scale per tensor, s = absmax / max
    nf4     QLoRA (Dettmers et al. 2023, https://arxiv.org/abs/2305.14314): block 64, fp32 absmax,
            nearest of 16 levels q_i = normalized N(0,1) quantiles (`nf4_levels`)
    mxfp4, mxfp8  OCP Microscaling v1.0 (https://www.opencompute.org/documents/ocp-microscaling-formats-mx-v1-0-spec-final-pdf):
            block 32, shared E8M0 scale X = 2^(⌊log₂ amax⌋ − e_max), e_max = 2 (E2M1) / 8 (E4M3),
            elements E2M1 / E4M3 (amax / X may exceed the element max: it saturates)
    nvfp4   NVIDIA: block 16, E2M1 elements, E4M3 block scale of (amax_b / 6) / s_t and one fp32
            tensor scale s_t = amax / (448 · 6); torchao's nvfp4_quantize arithmetic, step for step

Bits per weight (scales included): `bits_per_weight(fmt)`: int8 8.5, int4 4.5, nf4 4.5 (QLoRA's
double quantization of the absmax brings it to 4.127), mxfp4 4.25, mxfp8 8.25, nvfp4 4.5.
"""
from __future__ import annotations

import torch

from .validate import check_choice, check_finite, check_int, check_tensor, message

ELEMENTS = {"fp8_e4m3": (3, -6, 448.0), "fp8_e5m2": (2, -14, 57344.0), "fp4_e2m1": (1, 0, 6.0)}
EXPONENT_BITS = {"fp8_e4m3": 4, "fp8_e5m2": 5, "fp4_e2m1": 2}
E_MAX = {"fp8_e4m3": 8, "fp8_e5m2": 15, "fp4_e2m1": 2}      # exponent of the largest binade
FORMATS = ("int8", "int4", "fp8_e4m3", "fp8_e5m2", "fp4_e2m1", "nf4", "mxfp4", "mxfp8", "nvfp4")
BLOCK = {"int8": 32, "int4": 32, "nf4": 64, "mxfp4": 32, "mxfp8": 32, "nvfp4": 16}
ELEMENT_OF = {"mxfp4": "fp4_e2m1", "mxfp8": "fp8_e4m3", "nvfp4": "fp4_e2m1"}
SCALE_BITS = {"int8": 16, "int4": 16, "nf4": 32, "mxfp4": 8, "mxfp8": 8, "nvfp4": 8}
ELEMENT_BITS = {"int8": 8, "int4": 4, "fp8_e4m3": 8, "fp8_e5m2": 8, "fp4_e2m1": 4, "nf4": 4,
                "mxfp4": 4, "mxfp8": 8, "nvfp4": 4}
# bitsandbytes' NF4 table (float32), the values of QLoRA's Appendix E
NF4 = torch.tensor([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
                    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0])
FP16_TINY = 2.0 ** -24                                  # smallest fp16 subnormal


def cast(x: torch.Tensor, elem: str) -> torch.Tensor:
    """x rounded to the minifloat `elem` (fp8_e4m3, fp8_e5m2, fp4_e2m1): saturating, round to
    nearest even → float32, x's shape. Equals x.clamp(−max, max).to(torch.float8_e4m3fn).float()
    (and e5m2) for every finite float32 x."""
    check_tensor(x, "x", "cast")
    check_finite(x, "x", "cast")
    check_choice(elem, "elem", "cast", tuple(ELEMENTS))
    return _cast(x.detach().float(), elem)


def _cast(x: torch.Tensor, elem: str) -> torch.Tensor:
    M, e_min, vmax = ELEMENTS[elem]
    x = x.clamp(-vmax, vmax)
    e = torch.clamp(torch.frexp(x).exponent - 1, min=e_min)   # ⌊log₂|x|⌋, at least e_min
    step = torch.ldexp(torch.ones_like(x), e - M)              # a power of two: x / step is exact
    return torch.round(x / step) * step


def nf4_levels() -> torch.Tensor:
    """QLoRA's NF4 levels computed from their definition (float32, (16,)): the N(0,1) quantiles
    Φ⁻¹ of 8 evenly spaced probabilities in [1/2, δ] (positive side) and 7 in [1/2, δ]
    (negative side), plus an exact 0, divided by the largest: δ = ½(1 − 1/30 + 1 − 1/32) = 0.9677083
    (the mean of the last quantile offsets of 15 and 16 levels). Equals `NF4` to 1e-6."""
    delta = 0.9677083
    pos = torch.special.ndtri(torch.linspace(delta, 0.5, 9, dtype=torch.float64)[:-1])
    neg = -torch.special.ndtri(torch.linspace(delta, 0.5, 8, dtype=torch.float64)[:-1])
    v = torch.cat([pos, neg, torch.zeros(1, dtype=torch.float64)]).sort().values
    return (v / v.max()).float()


def values(fmt: str) -> torch.Tensor:
    """The distinct finite values of a format's element grid, sorted, float32 (a teaching table).

    Minifloats (also the elements of mxfp4 → fp4_e2m1, mxfp8 → fp8_e4m3, nvfp4 → fp4_e2m1) are
    enumerated from their bit fields: subnormal (e = 0) m/2^M · 2^(1−bias), normal
    (1 + m/2^M) · 2^(e−bias), bias = 2^(E−1) − 1, less E4M3's NaN code (e, m all ones) and
    E5M2's Inf/NaN exponent. int8 / int4: the integers ±(2^(b−1) − 1); nf4: `NF4`."""
    check_choice(fmt, "fmt", "values", FORMATS)
    if fmt in ("int8", "int4"):
        q = 2 ** (ELEMENT_BITS[fmt] - 1) - 1
        return torch.arange(-q, q + 1, dtype=torch.float32)
    if fmt == "nf4":
        return NF4.clone()
    elem = ELEMENT_OF.get(fmt, fmt)
    E, M = EXPONENT_BITS[elem], ELEMENTS[elem][0]
    bias = 2 ** (E - 1) - 1
    out = []
    for e in range(2 ** E):
        if elem == "fp8_e5m2" and e == 2 ** E - 1:                # Inf and NaN
            continue
        for m in range(2 ** M):
            if elem == "fp8_e4m3" and e == 2 ** E - 1 and m == 2 ** M - 1:   # the NaN code
                continue
            v = (m / 2 ** M) * 2.0 ** (1 - bias) if e == 0 else (1 + m / 2 ** M) * 2.0 ** (e - bias)
            out += [v, -v]
    return torch.tensor(sorted(set(out)), dtype=torch.float32)


def bits_per_weight(fmt: str, block_size: int | None = None) -> float:
    """Storage bits per value, block scales included: b + scale_bits / block.

    int8 / int4: fp16 scale per 32 → 8.5 / 4.5; nf4: fp32 absmax per 64 → 4.5; mxfp4 / mxfp8:
    E8M0 per 32 → 4.25 / 8.25; nvfp4: E4M3 per 16 → 4.5. The per-tensor fp32 scale of fp8_*,
    fp4_e2m1 and nvfp4 is 32 bits for the whole tensor, not counted (→ 0 per value)."""
    check_choice(fmt, "fmt", "bits_per_weight", FORMATS)
    if fmt not in BLOCK:
        return float(ELEMENT_BITS[fmt])
    g = BLOCK[fmt] if block_size is None else check_int(block_size, "block_size", "bits_per_weight", low=1)
    return ELEMENT_BITS[fmt] + SCALE_BITS[fmt] / g


def _blocks(x: torch.Tensor, g: int) -> tuple[torch.Tensor, int]:
    """x (…, n) → (rows · ⌈n/g⌉, g) float32, zero-padded; and the pad."""
    n = x.shape[-1]
    pad = (-n) % g
    return torch.nn.functional.pad(x.reshape(-1, n), (0, pad)).reshape(-1, g), pad


def fake_quantize(x: torch.Tensor, fmt: str, block_size: int | None = None) -> torch.Tensor:
    """x quantized to `fmt` and back: a new tensor of x's shape and dtype (computed in float32).

    Block formats group `block_size` consecutive values along the last axis (default: the
    format's block, `BLOCK`; block_size=-1: one block per row). The table in the module header
    says how each format scales. No gradient (use labkit.quantize.fake_quantize for QAT)."""
    check_tensor(x, "x", "fake_quantize")
    if x.ndim == 0 or x.numel() == 0:
        raise ValueError(message("x", "fake_quantize", "a non-empty tensor of ≥ 1 dimension", f"shape {tuple(x.shape)}"))
    check_finite(x, "x", "fake_quantize")
    check_choice(fmt, "fmt", "fake_quantize", FORMATS)
    v = x.detach().float()
    if fmt in ELEMENTS:                                       # one fp32 scale per tensor
        amax = v.abs().max()
        s = amax / ELEMENTS[fmt][2] if amax > 0 else torch.ones(())
        return (_cast(v / s, fmt) * s).to(x.dtype)
    n = x.shape[-1]
    g = BLOCK[fmt] if block_size is None or block_size == -1 else \
        check_int(block_size, "block_size", "fake_quantize", low=1)
    g = n if block_size == -1 else g
    b, pad = _blocks(v, g)
    amax = b.abs().amax(dim=1, keepdim=True)
    if fmt in ("int8", "int4"):
        q_max = 2 ** (ELEMENT_BITS[fmt] - 1) - 1
        s = (amax / q_max).half().float().clamp(FP16_TINY, 65504.0)   # the stored fp16 scale
        y = torch.clamp(torch.round(b / s), -q_max, q_max) * s
    elif fmt == "nf4":
        s = torch.where(amax > 0, amax, torch.ones_like(amax))
        mid = (NF4[1:] + NF4[:-1]) / 2                        # a tie goes to the lower level
        y = NF4[torch.bucketize(b / s, mid)] * s
    elif fmt in ("mxfp4", "mxfp8"):
        elem = ELEMENT_OF[fmt]
        e = torch.clamp(torch.frexp(amax).exponent - 1 - E_MAX[elem], -127, 127)   # E8M0's range
        X = torch.ldexp(torch.ones_like(amax), e)
        y = _cast(b / X, elem) * X
    else:                                                     # nvfp4
        t_amax = v.abs().max()
        if t_amax == 0:
            return torch.zeros_like(x)
        s_t = t_amax / (448.0 * 6.0)
        s_b = _cast(torch.clamp(amax / 6.0 / s_t, 2.0 ** -6, 448.0), "fp8_e4m3")
        y = _cast(torch.clamp(b * ((1.0 / s_t) / s_b), -6.0, 6.0), "fp4_e2m1") * (s_t * s_b)
    return y.reshape(-1, n + pad)[:, :n].reshape(x.shape).to(x.dtype)


def mse(x: torch.Tensor, fmt: str, block_size: int | None = None) -> float:
    """Mean squared error of `fake_quantize(x, fmt, block_size)` against x (for the format table)."""
    y = fake_quantize(x, fmt, block_size)
    return float(((y.float() - x.detach().float()) ** 2).mean())


def table(x: torch.Tensor, fmts=FORMATS) -> list[dict]:
    """One row per format: {fmt, bits_per_weight, mse, levels (count of element values)},
    sorted by bits per weight then MSE: the format comparison on the same weights x."""
    check_tensor(x, "x", "table")
    if isinstance(fmts, str) or not isinstance(fmts, (list, tuple)) or not fmts:
        raise TypeError(message("fmts", "table", "a non-empty list of format names", fmts))
    rows = [{"fmt": f, "bits_per_weight": bits_per_weight(f), "mse": mse(x, f),
             "levels": len(values(f))} for f in fmts]
    return sorted(rows, key=lambda r: (r["bits_per_weight"], r["mse"]))

