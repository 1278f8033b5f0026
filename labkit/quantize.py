"""Quantization kernels: linear (affine / symmetric), fixed point, k-means weight sharing, sizes.

Linear quantization (Jacob et al. 2018, https://arxiv.org/abs/1712.05877) maps a real x to an
integer q on a uniform grid of step s (the *scale*) with an integer offset z (the *zero point*):

    q  = clamp(round(x / s) + z, q_min, q_max)        x̂ = (q − z) · s

The conventions are PyTorch's (torch.ao.quantization's MinMaxObserver / PerChannelMinMaxObserver
and torch.fake_quantize_per_tensor_affine / _per_channel_affine), so a number here is the number
torch would store. The observed range [min, max] is first widened to contain 0 (so that 0, the
padding and ReLU value, is exact), then with b bits:

    affine     q ∈ [0, 2^b − 1]             s = (max⁺ − min⁻) / (2^b − 1),   z = −round(min⁻ / s)
    symmetric  q ∈ [−2^(b−1), 2^(b−1) − 1]   s = max(|min⁻|, max⁺) / ((2^b − 1) / 2),   z = 0

where min⁻ = min(min, 0), max⁺ = max(max, 0), s is clamped below by float32's eps, and z is
clamped into the integer range. Symmetric is torch.qint8's convention (signed integers, z = 0);
torch's quint8 "symmetric" stores the same grid shifted by 128.

Two symmetric grids, both z = 0, both available here as schemes:

    symmetric    q ∈ [−2^(b−1), 2^(b−1) − 1]       s = max|x| / ((2^b − 1)/2)   torch.qint8's; labkit.ptq's default
    restricted   q ∈ [−(2^(b−1) − 1), 2^(b−1) − 1]  s = max|x| / (2^(b−1) − 1)   GPTQ/AWQ, most courses, XNNPACK

"symmetric" (torch's) cannot represent +max|x|: its top level is (2^(b−1) − 1)·s, i.e. 127/127.5 of
max|x| at 8 bits, 7/7.5 = 14/15 at 4 bits and 1/1.5 = 2/3 at 2 bits, while −2^(b−1)·s overshoots −max|x|.
"restricted" drops the most negative code so the grid is the same on both sides of 0 and ±max|x| are
both levels (torch's observers with quant_min = −(2^(b−1) − 1) compute the same scale). labkit.deploy
(adaround, pt2e, XNNPACK) uses the restricted grid at 8 bits. round() is round-half-to-even
applied to x · (1/s), as torch's kernels do. `axis` selects per-channel parameters: one (s, z)
per index along that axis (per output channel for a weight, axis=0).

Granularity: labkit.ptq and labkit.mixed name it by a word, this module by an axis, the same thing:

    ptq granularity   quantize axis   parameters
    "tensor"          None            one (s, z) for the whole tensor
    "channel"         0               one (s, z) per output channel (dim 0 of a weight)

Fixed point (seed 003 §3.2) is the special case s = 2^−p, z = 0:  x̂ = round(x · 2^p) / 2^p.
K-means weight sharing (Han et al. 2016, "Deep Compression", https://arxiv.org/abs/1510.00149)
replaces the uniform grid by a learned codebook C of 2^b centroids: x̂_i = C[I_i]
(`kmeans`, `assign`, `codebook_grad`, `finetune_codebook`: pure kernels; labkit.share holds the
wrappers that change a model).
"""
from __future__ import annotations

import math
import numbers

import torch

from .validate import accepts, check_bits, check_choice, check_finite, check_float, check_int, check_tensor, message

SCHEMES = ("affine", "symmetric", "restricted")
EPS = torch.finfo(torch.float32).eps          # torch's observers clamp the scale to this


# ----------------------------------------------------------------------------- checks
def _axis(axis, x: torch.Tensor, func: str) -> int | None:
    if axis is None:
        return None
    axis = check_int(axis, "axis", func, low=-x.ndim, high=x.ndim - 1) if x.ndim else \
        check_int(axis, "axis", func, low=0, high=-1)          # a scalar has no axis
    return axis % x.ndim


def check_scheme(scheme, bits, func: str) -> str:
    """Return `scheme` if it is one of SCHEMES usable at `bits` bits, else raise: "restricted"
    needs bits ≥ 2 (at 1 bit its only level would be 0)."""
    check_choice(scheme, "scheme", func, SCHEMES)
    if scheme == "restricted" and bits is not None and bits < 2:
        raise ValueError(message("bits", func, "an int in the range [2, 16] for scheme 'restricted'", bits))
    return scheme


def qrange(bits: int = 8, scheme: str = "affine") -> tuple[int, int]:
    """(q_min, q_max): affine [0, 2^b − 1], symmetric [−2^(b−1), 2^(b−1) − 1], restricted
    [−(2^(b−1) − 1), 2^(b−1) − 1]."""
    bits = check_bits(bits, "bits", "qrange", high=16)
    check_scheme(scheme, bits, "qrange")
    return _qrange(bits, scheme)


def _qrange(bits: int, scheme: str) -> tuple[int, int]:
    if scheme == "affine":
        return 0, 2 ** bits - 1
    top = 2 ** (bits - 1) - 1
    return (-top - 1 if scheme == "symmetric" else -top), top


def _int_dtype(bits: int, scheme: str) -> torch.dtype:
    if bits <= 8:
        return torch.uint8 if scheme == "affine" else torch.int8
    return torch.int32


def _shape(t: torch.Tensor, x: torch.Tensor, axis: int | None) -> torch.Tensor:
    """Reshape per-channel parameters (C,) to broadcast against x along `axis`."""
    if axis is None or t.ndim == 0:
        return t
    shape = [1] * x.ndim
    shape[axis] = -1
    return t.reshape(shape)


# ----------------------------------------------------------------------------- linear
@accepts(negative="[−1, −1] is a range like any: widened to hold 0 it is [−1, 0], s = 1/255",
         large="[10**9, 10**9] is a range float32 holds: widened to hold 0 it is [0, 10**9]")
def qparams(min_val, max_val, bits: int = 8, scheme: str = "affine"):
    """(scale, zero_point) for an observed range [min_val, max_val], as torch's observers compute.

    min_val, max_val: floats or tensors of shape (C,) (per channel). Returns float32 scale and
    int64 zero_point tensors of the same shape (0-d for a float range).
    """
    bits = check_bits(bits, "bits", "qparams", high=16)
    check_scheme(scheme, bits, "qparams")
    for name, v in (("min_val", min_val), ("max_val", max_val)):
        if isinstance(v, bool) or not isinstance(v, (numbers.Real, torch.Tensor)):
            raise TypeError(message(name, "qparams", "a float or a tensor of shape (C,)", type(v).__name__))
        if isinstance(v, torch.Tensor) and v.numel() == 0:
            raise ValueError(message(name, "qparams", "a non-empty range", "an empty tensor"))
    lo = torch.as_tensor(min_val, dtype=torch.float32)
    hi = torch.as_tensor(max_val, dtype=torch.float32)
    if lo.shape != hi.shape:
        raise ValueError(message("max_val", "qparams", f"of the same shape as min_val "
                                  f"{tuple(lo.shape)}", f"shape {tuple(hi.shape)}"))
    if bool((lo > hi).any()) or bool(lo.isnan().any() | hi.isnan().any()):
        raise ValueError(message("max_val", "qparams", "≥ min_val (and not NaN)",
                                  (lo.tolist(), hi.tolist())))
    if not bool(torch.isfinite(lo).all() & torch.isfinite(hi).all()):   # an Inf end: scale Inf
        raise ValueError(message("max_val", "qparams", "finite, like min_val", (lo.tolist(), hi.tolist())))
    return _qparams(lo, hi, bits, scheme)


def _qparams(lo: torch.Tensor, hi: torch.Tensor, bits: int, scheme: str):
    """`qparams` without the entry checks (for the per-forward use in labkit.ptq)."""
    q_min, q_max = _qrange(bits, scheme)
    lo, hi = torch.clamp(lo, max=0.0), torch.clamp(hi, min=0.0)   # widen the range to hold 0
    if scheme != "affine":          # symmetric: max|x| / ((2^b − 1)/2); restricted: max|x| / (2^(b−1) − 1)
        scale = torch.clamp(torch.maximum(-lo, hi) / (float(q_max - q_min) / 2), min=EPS)
        zero_point = torch.zeros_like(scale, dtype=torch.int64)
    else:
        scale = torch.clamp((hi - lo) / float(q_max - q_min), min=EPS)
        zero_point = torch.clamp(q_min - torch.round(lo / scale).to(torch.int64), q_min, q_max)
    return scale, zero_point


def observe(x: torch.Tensor, axis: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(min, max) of x, over everything (axis=None) or per index along `axis` → shapes (C,).

    x must be finite: one NaN or Inf would become the range and poison every scale."""
    return _observe(x, axis, "observe")


def _observe(x, axis, func: str):
    check_tensor(x, "x", func)
    axis = _axis(axis, x, func)
    x = x.detach().float()
    if x.numel() == 0:
        raise ValueError(message("x", func, "a non-empty tensor", "an empty tensor"))
    check_finite(x, "x", func)
    if axis is None:
        return x.min(), x.max()
    lo, hi = x.movedim(axis, 0).reshape(x.shape[axis], -1).aminmax(dim=1)
    return lo, hi


def _entry(x, bits, scheme, axis, scale, zero_point, func: str):
    """The entry checks shared by `quantize` and `fake_quantize`; fills in x's min-max
    (scale, zero_point) when none is given. → (axis, scale, zero_point, q_min, q_max)."""
    check_tensor(x, "x", func)
    bits = check_bits(bits, "bits", func, high=16)
    check_scheme(scheme, bits, func)
    axis = _axis(axis, x, func)
    if scale is None:
        scale, zero_point = qparams(*_observe(x, axis, func), bits=bits, scheme=scheme)
    elif zero_point is None:
        raise ValueError(message("zero_point", func, "given whenever scale is given", None))
    return (axis, scale, zero_point, *qrange(bits, scheme))


def quantize(x: torch.Tensor, bits: int = 8, scheme: str = "affine", axis: int | None = None,
             scale: torch.Tensor | None = None, zero_point: torch.Tensor | None = None):
    """Quantize x → (q, scale, zero_point). q is an integer tensor of x's shape.

    q's dtype: uint8 (affine) / int8 (symmetric) for bits ≤ 8, else int32. scale, zero_point
    come from x's min-max (`qparams(*observe(x, axis))`) unless given (e.g. from calibration).
    """
    axis, scale, zero_point, q_min, q_max = _entry(x, bits, scheme, axis, scale, zero_point, "quantize")
    s, z = _shape(scale.float(), x, axis), _shape(zero_point, x, axis)
    q = torch.clamp(torch.round(x.detach().float() * (1.0 / s)) + z, q_min, q_max)
    return q.to(_int_dtype(bits, scheme)), scale, zero_point


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
               axis: int | None = None) -> torch.Tensor:
    """x̂ = (q − z) · s, float32, with per-channel (s, z) broadcast along `axis`."""
    check_tensor(q, "q", "dequantize", floating=False)
    if q.is_floating_point() or q.is_complex() or q.dtype == torch.bool:
        raise TypeError(message("q", "dequantize", "an integer tensor (from quantize)", f"dtype {q.dtype}"))
    axis = _axis(axis, q, "dequantize")
    for name, v in (("scale", scale), ("zero_point", zero_point)):
        if isinstance(v, bool) or not isinstance(v, (numbers.Real, torch.Tensor)):
            raise TypeError(message(name, "dequantize", "a number or a tensor of shape (C,)", type(v).__name__))
    scale = torch.as_tensor(scale, dtype=torch.float32)
    zero_point = torch.as_tensor(zero_point)
    if scale.numel() == 0 or not bool((torch.isfinite(scale) & (scale > 0)).all()):
        raise ValueError(message("scale", "dequantize", "finite and > 0", scale.tolist()))
    if axis is not None and scale.ndim == 1 and scale.numel() != q.shape[axis]:
        raise ValueError(message("scale", "dequantize", f"of length q.shape[{axis}] = "
                                  f"{q.shape[axis]}", f"length {scale.numel()}"))
    return (q.to(torch.int64) - _shape(zero_point, q, axis)).float() * _shape(scale, q, axis)


class _FakeQuant(torch.autograd.Function):
    """Forward: x̂ = (clamp(round(x/s) + z) − z)·s. Backward (straight-through estimator):
    ∂x̂/∂x = 1 where round(x/s) + z ∈ [q_min, q_max] (inside the clipping range), else 0."""

    @staticmethod
    def forward(ctx, x, s, z, q_min, q_max):
        q = torch.round(x * (1.0 / s)).add_(z)
        ctx.save_for_backward((q >= q_min) & (q <= q_max))
        return q.clamp_(q_min, q_max).sub_(z).mul_(s)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None, None


def ste(x: torch.Tensor, scale, zero_point, q_min: int, q_max: int) -> torch.Tensor:
    """The fake-quantize kernel: x̂ = (clamp(round(x/s) + z, q_min, q_max) − z)·s, backward by the
    straight-through estimator (gradient 1 inside the clipping range, 0 outside). scale and
    zero_point: floats or tensors that broadcast against x. What `fake_quantize` and labkit.ptq's
    layers run (`ptq.quantize_model(kernel=...)` takes any function of this signature)."""
    check_tensor(x, "x", "ste")
    q_min, q_max = check_int(q_min, "q_min", "ste"), check_int(q_max, "q_max", "ste")
    if q_min >= q_max:
        raise ValueError(message("q_max", "ste", f"an int greater than q_min = {q_min}", q_max))
    s = torch.as_tensor(scale, dtype=torch.float32)
    if not bool((s > 0).all()) or not bool(torch.isfinite(s).all()):
        raise ValueError(message("scale", "ste", "positive and finite", scale))
    z = torch.as_tensor(zero_point, dtype=torch.float32)
    return _FakeQuant.apply(x, s, z, q_min, q_max)


def fake_quantize(x: torch.Tensor, bits: int = 8, scheme: str = "affine", axis: int | None = None,
                  scale: torch.Tensor | None = None, zero_point: torch.Tensor | None = None):
    """dequantize(quantize(x)) in floating point, differentiable by the straight-through estimator.

    Equals torch.fake_quantize_per_tensor_affine / fake_quantize_per_channel_affine, values and
    gradients. scale / zero_point: as in `quantize` (x's min-max when not given; not learned).
    """
    axis, scale, zero_point, q_min, q_max = _entry(x, bits, scheme, axis, scale, zero_point,
                                                   "fake_quantize")
    s = _shape(scale.to(x.device, torch.float32), x, axis)
    z = _shape(zero_point.to(x.device, torch.float32), x, axis)
    return _FakeQuant.apply(x, s, z, q_min, q_max)


def _fake_quantize(x: torch.Tensor, bits: int, scheme: str, axis: int | None = None,
                   scale: torch.Tensor | None = None, zero_point: torch.Tensor | None = None,
                   kernel=None):
    """`fake_quantize` without the entry checks (x's min-max when scale is None). kernel:
    fn(x, scale, zero_point, q_min, q_max) → x̂ with scale and zero point shaped to broadcast
    against x (default labkit's straight-through kernel; notebook 04's exercise plugs in its own)."""
    if scale is None:
        d = x.detach()
        lo, hi = d.aminmax() if axis is None else d.movedim(axis, 0).flatten(1).aminmax(dim=1)
        scale, zero_point = _qparams(lo.float(), hi.float(), bits, scheme)
    q_min, q_max = _qrange(bits, scheme)
    return (kernel or _FakeQuant.apply)(x, _shape(scale, x, axis), _shape(zero_point.float(), x, axis),
                                        q_min, q_max)


def fixed_point(w: torch.Tensor, p: int, bits: int | None = None) -> torch.Tensor:
    """round(w · 2^p) / 2^p: p fractional bits; with `bits`, saturated to a signed `bits`-bit
    integer, i.e. to [−2^(bits−1), 2^(bits−1) − 1] / 2^p.

    Seed 003 §3.2 / §4 computes round(w · 2^4) and never divides by 2^4, so the layer's weights
    grow 16× (erratum 5). Returns a new tensor.
    """
    check_tensor(w, "w", "fixed_point")
    p = check_int(p, "p", "fixed_point", low=-32, high=32)
    q = torch.round(w * 2.0 ** p)
    if bits is not None:
        bits = check_bits(bits, "bits", "fixed_point", high=32)
        q = torch.clamp(q, -2 ** (bits - 1), 2 ** (bits - 1) - 1)
    return q / 2.0 ** p


# ----------------------------------------------------------------------------- k-means
def kmeans(x: torch.Tensor, bits: int, seed: int = 0, iters: int = 50, init: str = "linear"):
    """Weight sharing by 1-D k-means (Lloyd) → (codebook (2^bits,), indices (x's shape, int64)).

    x ≈ codebook[indices]. init (Han et al. 2016 §3.1): "linear" spaces the k = 2^bits centroids
    evenly over the range (their best; deterministic). Here they are exactly the k levels of the
    affine linear quantizer with the same bits (the range [min, max] widened to hold 0), so
    k-means starts where linear quantization ends and, since no Lloyd step raises the error,
    MSE(kmeans) ≤ MSE(linear) always. "density" starts at the quantiles of x, "random" (Forgy)
    at k values of x drawn with `seed`. Each Lloyd iteration assigns every value to its nearest
    centroid (boundaries at the midpoints) and moves each centroid to the mean of its values; a
    centroid left with no values is moved onto the value with the largest error (as
    scikit-learn does), which also never raises the error. Stops when nothing changes.
    """
    check_tensor(x, "x", "kmeans")
    check_finite(x, "x", "kmeans")                    # a NaN would become a centroid
    bits = check_bits(bits, "bits", "kmeans", high=16)
    seed = check_int(seed, "seed", "kmeans", low=0)
    iters = check_int(iters, "iters", "kmeans", low=0)
    check_choice(init, "init", "kmeans", ("linear", "density", "random"))
    if x.numel() == 0:
        raise ValueError(message("x", "kmeans", "a non-empty tensor", "an empty tensor"))
    v = x.detach().reshape(-1).double()
    k = 2 ** bits
    if init == "linear":
        q_min, q_max = qrange(bits, "affine")
        s, z = qparams(float(v.min()), float(v.max()), bits, "affine")
        c = (torch.arange(q_min, q_max + 1, dtype=torch.float64) - int(z)) * float(s)
    elif init == "density":
        c = torch.quantile(v.float(), torch.linspace(0, 1, k)).double()
    else:
        g = torch.Generator().manual_seed(seed)
        c = v[torch.randint(len(v), (k,), generator=g)].sort().values
    vs = v.sort().values                     # on sorted values a cluster is a contiguous run,
    csum = torch.cat([vs.new_zeros(1), vs.cumsum(0)])   # so its sum is a cumsum difference
    edges = _edges(vs, c)
    for _ in range(iters):
        counts = edges[1:] - edges[:-1]
        sums = csum[edges[1:]] - csum[edges[:-1]]
        c = torch.where(counts > 0, sums / counts.clamp(min=1), c)
        empty = torch.nonzero(counts == 0).reshape(-1)
        n_move = 0
        if len(empty):                       # empty centroids → the worst-fit values
            err = (vs - c.repeat_interleave(counts)) ** 2
            n_move = min(len(empty), int((err > 0).sum()))
            if n_move:
                c[empty[:n_move]] = vs[err.topk(n_move).indices]
        c = c.sort().values
        new = _edges(vs, c)
        if torch.equal(new, edges) and not n_move:
            break
        edges = new
    return c.to(x.dtype), _assign(v, c).reshape(x.shape)


def _edges(vs: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Cluster k of the sorted values vs is vs[e_k : e_(k+1)] (the same rule as `_assign`)."""
    mid = (c[1:] + c[:-1]) / 2
    n = torch.tensor([len(vs)])
    return torch.cat([torch.zeros(1, dtype=torch.int64), torch.searchsorted(vs, mid, right=True), n])


def _assign(v: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Index of the nearest of the sorted centroids c for each value of v (ties → lower)."""
    mid = (c[1:] + c[:-1]) / 2
    return torch.bucketize(v, mid, right=False)


def assign(x: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """The index of the nearest entry of a sorted 1-D codebook for every value of x (x's shape,
    int64; a value half-way between two entries gets the lower one): the I of x ≈ codebook[I]."""
    check_finite(x, "x", "assign")                    # NaN has no nearest entry
    check_finite(codebook, "codebook", "assign")
    if codebook.ndim != 1 or len(codebook) == 0 or bool((codebook[1:] < codebook[:-1]).any()):
        raise ValueError(message("codebook", "assign", "a sorted 1-D tensor", codebook))
    return _assign(x.detach().double().reshape(-1), codebook.detach().double()).reshape(x.shape)


def codebook_grad(indices: torch.Tensor, grad: torch.Tensor, k: int) -> torch.Tensor:
    """∂L/∂C_k = Σ_i ∂L/∂W_i · 1(I_i = k) (Han et al. 2016, eq. 3): the gradients summed per
    centroid. indices, grad: the same shape; returns (k,)."""
    check_tensor(indices, "indices", "codebook_grad", floating=False)
    check_tensor(grad, "grad", "codebook_grad")
    k = check_int(k, "k", "codebook_grad", low=1)
    if indices.shape != grad.shape:
        raise ValueError(message("grad", "codebook_grad", f"of the shape of indices "
                                  f"{tuple(indices.shape)}", f"shape {tuple(grad.shape)}"))
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= k):
        raise ValueError(message("indices", "codebook_grad", f"in [0, {k})",
                                  (int(indices.min()), int(indices.max()))))
    return torch.zeros(k, dtype=grad.dtype).index_add_(0, indices.reshape(-1).long(),
                                                       grad.reshape(-1))


def finetune_codebook(codebook: torch.Tensor, indices: torch.Tensor, grad: torch.Tensor,
                      lr: float) -> torch.Tensor:
    """One gradient step on the shared weights: C ← C − lr · ∂L/∂C (a new tensor).

    grad: ∂L/∂W of the layer whose weights are codebook[indices], e.g. `layer.weight.grad`.
    """
    check_tensor(codebook, "codebook", "finetune_codebook")
    lr = check_float(lr, "lr", "finetune_codebook", low=0)
    return codebook - lr * codebook_grad(indices, grad, len(codebook)).to(codebook.dtype)


# ----------------------------------------------------------------------------- sizes
def size_bytes(numel: int, bits: int, channels: int = 1, scheme: str = "affine",
               codebook: int = 0, param_bits: int = 32) -> int:
    """Bytes to store `numel` values at `bits` bits each, packed, with their parameters.

    Linear (codebook=0): one scale (float, `param_bits`) per channel, plus for "affine" one zero
    point per channel stored at `bits` bits (it lies in the integer range). Symmetric stores no
    zero point. K-means (codebook=k > 0): k centroids at `param_bits` each and no scale.
    size = ceil((numel·bits + overhead) / 8). fp32 storage is size_bytes(n, 32, channels=0).
    """
    numel = check_int(numel, "numel", "size_bytes", low=0)
    bits = check_bits(bits, "bits", "size_bytes", high=64)
    channels = check_int(channels, "channels", "size_bytes", low=0)
    check_choice(scheme, "scheme", "size_bytes", SCHEMES)
    codebook = check_int(codebook, "codebook", "size_bytes", low=0)
    param_bits = check_bits(param_bits, "param_bits", "size_bytes", high=64)
    if codebook:
        overhead = codebook * param_bits
    else:
        overhead = channels * (param_bits + (bits if scheme == "affine" else 0))
    return math.ceil((numel * bits + overhead) / 8)


# ----------------------------------------------------------------------------- group-wise (LLM weights)
# Weight-only LLM quantization (GPTQ, AWQ, llama.cpp, ONNX Runtime's MatMulNBits) gives every
# group of `group_size` consecutive weights along the input dimension (W's last axis, W: (out, in))
# its own (s, z): W.reshape(out, in / g, g) quantized per row of g. Three grids:
#
#     affine      torch's / GPTQ's / AWQ's asymmetric grid (q ∈ [0, 2^b − 1], range widened to hold 0)
#     symmetric   torch's qint8 grid, s = max|x| / ((2^b − 1) / 2), q ∈ [−2^(b−1), 2^(b−1) − 1]:
#                 also GPTQ's reference `sym=True` (scale (2·max|x|) / (2^b − 1), zero 2^(b−1))
#     restricted  s = max|x| / (2^(b−1) − 1), q ∈ [−(2^(b−1) − 1), 2^(b−1) − 1]: AWQ's symmetric
#                 grid (llm-awq `zero_point=False`), ONNX Runtime's RTN "sym", the INT4 of the
#                 format papers; one level fewer, but ±max|x| are both exact.
GROUP_SCHEMES = SCHEMES                   # the module's three grids (SCHEMES), per group


def group_qparams(w: torch.Tensor, bits: int, scheme: str = "affine"):
    """(scale, zero_point) per row of a 2-D w (rows, g): float32 and float32 (rows, 1), with
    q = clamp(round(w / s) + z, q_min, q_max), ŵ = (q − z) · s; `group_range` gives (q_min, q_max).

    Equal to `qparams(*observe(w, axis=0))` for every scheme."""
    check_tensor(w, "w", "group_qparams")
    if w.ndim != 2 or w.numel() == 0:
        raise ValueError(message("w", "group_qparams", "a non-empty 2-D tensor (rows, g)", f"shape {tuple(w.shape)}"))
    check_finite(w, "w", "group_qparams")
    bits = check_bits(bits, "bits", "group_qparams", low=2, high=16)
    check_choice(scheme, "scheme", "group_qparams", GROUP_SCHEMES)
    lo, hi = w.detach().float().aminmax(dim=1)
    s, z = _qparams(lo, hi, bits, scheme)
    return s[:, None], z.float()[:, None]


def group_range(bits: int, scheme: str = "affine") -> tuple[int, int]:
    """(q_min, q_max) of a `group_qparams` grid: `qrange` (bits ≥ 2)."""
    bits = check_bits(bits, "bits", "group_range", low=2, high=16)
    check_choice(scheme, "scheme", "group_range", GROUP_SCHEMES)
    return _qrange(bits, scheme)


def groupwise(w: torch.Tensor, bits: int, group_size: int | None = 128, scheme: str = "affine") -> torch.Tensor:
    """Round-to-nearest (RTN) per group of `group_size` along the last axis → dequantized w
    (a new tensor, w's shape and dtype).

    group_size=None or −1: one group per row, i.e. per output channel of a weight (out, in):
    equals fake_quantize(w, bits, scheme, axis=0) for a 2-D w. Per tensor:
    groupwise(w.reshape(1, -1), bits, None).reshape(w.shape) = fake_quantize(w, bits, scheme).
    A last group shorter than group_size (in % g ≠ 0) is its own smaller group (zero padding:
    each range holds 0 already, so the padding changes no scale). Computed in float32 (float64
    for a float64 w). On the symmetric grid −max|x| / s = −2^(b−1) + ½ is a tie: float rounding of
    x · (1/s) decides it, as in torch's kernels.
    """
    check_tensor(w, "w", "groupwise")
    if w.ndim == 0 or w.numel() == 0:
        raise ValueError(message("w", "groupwise", "a non-empty tensor of ≥ 1 dimension", f"shape {tuple(w.shape)}"))
    check_finite(w, "w", "groupwise")
    bits = check_bits(bits, "bits", "groupwise", low=2, high=16)
    check_choice(scheme, "scheme", "groupwise", GROUP_SCHEMES)
    n = w.shape[-1]
    g = n if group_size is None or group_size == -1 else check_int(group_size, "group_size", "groupwise", low=1)
    g = min(g, n)
    pad = (-n) % g
    x = w.detach().to(torch.promote_types(w.dtype, torch.float32))           # float32, or float64
    x = torch.nn.functional.pad(x.reshape(-1, n), (0, pad)).reshape(-1, g)
    s, z = group_qparams(x, bits, scheme)
    q_min, q_max = group_range(bits, scheme)
    x = (torch.clamp(torch.round(x * (1.0 / s)) + z, q_min, q_max) - z) * s
    return x.reshape(-1, n + pad)[:, :n].reshape(w.shape).to(w.dtype)


def bits_per_weight(bits: int, group_size: int, scheme: str = "affine", scale_bits: int = 16,
                    zero_bits: int | None = None) -> float:
    """Storage bits per weight, scales and zeros included: b + (scale_bits + zero_bits) / g.

    One scale (`scale_bits`, fp16 by default) per group of g weights, and for "affine" one zero
    point of `zero_bits` (default: b, the zero lies on the integer grid). By hand: 4-bit, g = 128,
    affine, fp16 scale, 4-bit zero: 4 + (16 + 4) / 128 = 4.15625. Per channel: g = in_features.
    """
    bits = check_bits(bits, "bits", "bits_per_weight", low=1, high=32)
    g = check_int(group_size, "group_size", "bits_per_weight", low=1)
    check_choice(scheme, "scheme", "bits_per_weight", GROUP_SCHEMES)
    scale_bits = check_bits(scale_bits, "scale_bits", "bits_per_weight", low=1, high=64)
    zero_bits = bits if zero_bits is None else check_bits(zero_bits, "zero_bits", "bits_per_weight", low=1, high=64)
    return bits + (scale_bits + (zero_bits if scheme == "affine" else 0)) / g
