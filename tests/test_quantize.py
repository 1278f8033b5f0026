"""labkit.quantize: hand-computed values, agreement with torch.ao observers and torch.fake_quantize_*,
property tests (hypothesis), bad input."""
import math

import pytest
import torch
import torch.ao.quantization as tq
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from labkit import quantize as Q

BITS = [1, 2, 3, 4, 8, 12, 16]


def _observer(bits, scheme, axis):
    q_min, q_max = Q.qrange(bits, scheme)
    dtype = torch.qint32 if bits > 8 else (torch.quint8 if scheme == "affine" else torch.qint8)
    if axis is None:
        qs = torch.per_tensor_affine if scheme == "affine" else torch.per_tensor_symmetric
        return tq.MinMaxObserver(dtype=dtype, qscheme=qs, quant_min=q_min, quant_max=q_max)
    qs = torch.per_channel_affine if scheme == "affine" else torch.per_channel_symmetric
    return tq.PerChannelMinMaxObserver(ch_axis=axis, dtype=dtype, qscheme=qs,
                                       quant_min=q_min, quant_max=q_max)


# ------------------------------------------------------------------ hand-computed
def test_affine_2bit_by_hand():
    # min −1, max 2, 4 levels: s = 3/3 = 1, z = 0 − round(−1/1) = 1; q = round(x) + 1
    x = torch.tensor([-1.0, 0.0, 0.5, 2.0])
    q, s, z = Q.quantize(x, bits=2, scheme="affine")
    assert q.dtype == torch.uint8
    assert q.tolist() == [0, 1, 1, 3]                  # round(0.5) = 0: half to even
    assert float(s) == 1.0 and int(z) == 1
    assert Q.dequantize(q, s, z).tolist() == [-1.0, 0.0, 0.0, 2.0]


def test_symmetric_2bit_by_hand():
    # range [−2, 1], s = max|x| / ((1 − (−2)) / 2) = 2 / 1.5; 2/s = 1.5 → round 2 → clamp 1
    x = torch.tensor([-1.0, 0.0, 0.5, 2.0])
    q, s, z = Q.quantize(x, bits=2, scheme="symmetric")
    assert q.dtype == torch.int8 and int(z) == 0
    assert float(s) == pytest.approx(4 / 3)
    assert q.tolist() == [-1, 0, 0, 1]
    assert Q.dequantize(q, s, z).tolist() == pytest.approx([-4 / 3, 0, 0, 4 / 3])


def test_range_is_widened_to_hold_zero():
    s, z = Q.qparams(2.0, 4.0, bits=8, scheme="affine")        # [2, 4] → [0, 4]
    assert float(s) == pytest.approx(4 / 255) and int(z) == 0
    s, z = Q.qparams(0.0, 0.0, bits=8)                         # empty range: eps, not 0
    assert float(s) == Q.EPS


def test_qrange_and_int_dtypes():
    assert Q.qrange(8, "affine") == (0, 255) and Q.qrange(8, "symmetric") == (-128, 127)
    assert Q.qrange(1, "symmetric") == (-1, 0)
    q, _, _ = Q.quantize(torch.randn(10), bits=12)
    assert q.dtype == torch.int32 and int(q.max()) <= 4095


def test_fixed_point_by_hand():
    w = torch.tensor([0.3, -0.7, 1.0])
    assert Q.fixed_point(w, 2).tolist() == [0.25, -0.75, 1.0]          # round(w·4)/4
    assert Q.fixed_point(w, 2, bits=3).tolist() == [0.25, -0.75, 0.75]  # q ∈ [−4, 3]


def test_fixed_point_keeps_the_scale_erratum_5():
    w = torch.randn(5, 10, generator=torch.Generator().manual_seed(0))
    seed_version = torch.round(w * 2 ** 4)                    # seed 003 §4: never divided back
    assert (seed_version - 16 * w).abs().max() <= 0.5         # the layer's weights are 16× w
    fixed = Q.fixed_point(w, 4)
    assert (fixed - w).abs().max() <= 2.0 ** -5               # fixed point stays within 1/32
    assert torch.equal(fixed, seed_version / 16)


def test_kmeans_by_hand():
    x = torch.tensor([0.0, 0.1, 0.9, 1.0])
    c, idx = Q.kmeans(x, bits=1)                             # init [0, 1] → means [0.05, 0.95]
    assert c.tolist() == pytest.approx([0.05, 0.95])
    assert idx.tolist() == [0, 0, 1, 1] and idx.dtype == torch.int64


def test_kmeans_shape_and_inits():
    x = torch.randn(30, 20, generator=torch.Generator().manual_seed(1))
    for init in ("linear", "density", "random"):
        c, idx = Q.kmeans(x, 3, seed=4, init=init)
        assert c.shape == (8,) and idx.shape == x.shape
        assert torch.all(c[1:] >= c[:-1])
    c1, i1 = Q.kmeans(x, 3, seed=4, init="random")
    c2, i2 = Q.kmeans(x, 3, seed=4, init="random")
    assert torch.equal(c1, c2) and torch.equal(i1, i2)       # deterministic for a seed


def test_codebook_grad_and_step_by_hand():
    idx = torch.tensor([[0, 1], [1, 0]])
    g = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert Q.codebook_grad(idx, g, 3).tolist() == [5.0, 5.0, 0.0]
    c = torch.tensor([1.0, 2.0, 3.0])
    new = Q.finetune_codebook(c, idx, g, lr=0.1)
    assert new.tolist() == pytest.approx([0.5, 1.5, 3.0]) and c.tolist() == [1.0, 2.0, 3.0]


def test_codebook_grad_equals_autograd():
    # the gradient of L(C[I]) with respect to C is the per-centroid sum (Han et al. eq. 3)
    gen = torch.Generator().manual_seed(0)
    c = torch.randn(4, requires_grad=True)
    idx = torch.randint(0, 4, (6, 5), generator=gen)
    target = torch.randn(6, 5, generator=gen)
    w = c[idx]
    w.retain_grad()
    ((w - target) ** 2).sum().backward()
    assert torch.allclose(Q.codebook_grad(idx, w.grad, 4), c.grad)


def test_size_bytes_by_hand():
    assert Q.size_bytes(100, 4, channels=10, scheme="symmetric") == 90      # 400 + 10·32 bits
    assert Q.size_bytes(100, 4, channels=10, scheme="affine") == 95         # + 10·4 bits
    assert Q.size_bytes(100, 4, codebook=16) == 114                         # 400 + 16·32
    assert Q.size_bytes(3, 1, channels=0) == 1                              # packed, ceil
    assert Q.size_bytes(266_200, 32, channels=0) == 4 * 266_200


# ------------------------------------------------------------------ reference tools
@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("scheme", Q.SCHEMES)
@pytest.mark.parametrize("axis", [None, 0, 1])
def test_equals_torch_observer_and_fake_quantize(bits, scheme, axis):
    """restricted = torch's observer and kernels with quant_min = −(2^(b−1) − 1)."""
    if scheme == "restricted" and bits == 1:
        with pytest.raises(ValueError, match="'bits' parameter of quantize must be an int in the range \\[2, 16\\] for scheme 'restricted'"):
            Q.quantize(torch.ones(3), 1, scheme)
        return
    x = torch.randn(6, 40, generator=torch.Generator().manual_seed(bits)) * 3 + 0.7
    obs = _observer(bits, scheme, axis)
    obs(x)
    s_ref, z_ref = obs.calculate_qparams()
    q, s, z = Q.quantize(x, bits, scheme, axis)
    assert torch.equal(s.reshape(-1), s_ref.reshape(-1))
    assert torch.equal(z.reshape(-1), z_ref.reshape(-1).long())
    q_min, q_max = Q.qrange(bits, scheme)
    if axis is None:
        ref = torch.fake_quantize_per_tensor_affine(x, float(s_ref), int(z_ref), q_min, q_max)
    else:
        ref = torch.fake_quantize_per_channel_affine(x, s_ref, z_ref.int(), axis, q_min, q_max)
    assert torch.equal(Q.dequantize(q, s, z, axis), ref)
    assert torch.equal(Q.fake_quantize(x, bits, scheme, axis), ref)


def test_ste_gradient_equals_torch():
    x = torch.linspace(-3, 3, 101, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    s, z = torch.tensor(0.02), torch.tensor(100)              # range [−2, 3.1]: clips both ends
    y = Q.fake_quantize(x, 8, scale=s, zero_point=z)
    y_ref = torch.fake_quantize_per_tensor_affine(x_ref, 0.02, 100, 0, 255)
    assert torch.equal(y.detach(), y_ref.detach())
    w = torch.randn(101, generator=torch.Generator().manual_seed(0))
    (y * w).sum().backward()
    (y_ref * w).sum().backward()
    assert torch.equal(x.grad, x_ref.grad)
    assert x.grad[0] == 0 and x.grad[50] == w[50]             # zero outside, passes inside


def test_int8_weights_equal_torch_quantized_tensor():
    w = torch.randn(8, 16, generator=torch.Generator().manual_seed(2))
    q, s, z = Q.quantize(w, 8, "symmetric", axis=0)
    tq_w = torch.quantize_per_channel(w, s.double(), z, 0, torch.qint8)
    assert torch.equal(tq_w.int_repr(), q)


# ------------------------------------------------------------------ properties
finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@settings(max_examples=150, deadline=None)
@given(arrays("float32", st.integers(1, 60), elements=finite), st.integers(1, 16),
       st.sampled_from(Q.SCHEMES))
def test_error_at_most_half_a_step_inside_the_range(a, bits, scheme):
    bits = max(bits, 2) if scheme == "restricted" else bits      # restricted needs 2 bits (tested above)
    x = torch.from_numpy(a)
    q, s, z = Q.quantize(x, bits, scheme)
    q_min, q_max = Q.qrange(bits, scheme)
    lo, hi = (q_min - float(z)) * float(s), (q_max - float(z)) * float(s)
    inside = (x >= lo) & (x <= hi)
    err = (x - Q.dequantize(q, s, z)).abs()
    ulp = 4 * Q.EPS * x.abs()                                 # float32 rounding of x/s and q·s
    assert torch.all(err[inside] <= (float(s) / 2 + ulp)[inside])
    assert torch.all((q.long() >= q_min) & (q.long() <= q_max))


@settings(max_examples=100, deadline=None)
@given(arrays("float32", st.integers(2, 80), elements=finite), st.integers(1, 6))
def test_kmeans_mse_at_most_linear_mse(a, bits):
    x = torch.from_numpy(a).double()
    c, idx = Q.kmeans(x, bits, iters=100)
    kmeans_mse = float(((c[idx] - x) ** 2).mean())
    linear_mse = float(((Q.fake_quantize(x.float(), bits, "affine").double() - x) ** 2).mean())
    assert kmeans_mse <= linear_mse * (1 + 1e-6) + 1e-9


@settings(max_examples=60, deadline=None)
@given(arrays("float32", st.integers(1, 40), elements=st.floats(-8, 8, width=32)),
       st.integers(0, 8))
def test_fixed_point_error_bound(a, p):
    w = torch.from_numpy(a)
    assert torch.all((Q.fixed_point(w, p) - w).abs() <= 2.0 ** -(p + 1))


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("bits,exc", [(0, ValueError), (33, ValueError), (17, ValueError),
                                      (2.5, TypeError), ("8", TypeError), (True, TypeError)])
def test_bad_bits(bits, exc):
    with pytest.raises(exc, match="'bits' parameter of quantize must be an int in the range "
                                  r"\[1, 16\]"):
        Q.quantize(torch.randn(4), bits=bits)
    with pytest.raises(exc):
        Q.fake_quantize(torch.randn(4), bits=bits)
    with pytest.raises(exc):
        Q.kmeans(torch.randn(4), bits=bits)


def test_bad_scheme_axis_and_tensors():
    x = torch.randn(3, 4)
    with pytest.raises(ValueError, match="'scheme' parameter of quantize must be one of"):
        Q.quantize(x, scheme="asymmetric")
    with pytest.raises(ValueError, match=r"'axis' parameter of quantize must be an int in the "
                                         r"range \[-2, 1\]. Got 2 instead"):
        Q.quantize(x, axis=2)
    with pytest.raises(TypeError, match="'axis'"):
        Q.quantize(x, axis=1.0)
    with pytest.raises(TypeError, match="floating-point"):
        Q.quantize(torch.arange(4))
    with pytest.raises(TypeError, match="'x' parameter of quantize must be a torch.Tensor"):
        Q.quantize([1.0, 2.0])
    with pytest.raises(ValueError, match="zero_point"):
        Q.quantize(x, scale=torch.tensor(0.1))
    with pytest.raises(ValueError, match="max_val"):
        Q.qparams(1.0, -1.0)
    with pytest.raises(ValueError, match="'p' parameter of fixed_point"):
        Q.fixed_point(x, 40)
    with pytest.raises(ValueError, match="'indices' parameter of codebook_grad"):
        Q.codebook_grad(torch.tensor([0, 5]), torch.ones(2), 4)
    with pytest.raises(ValueError, match="'lr' parameter of finetune_codebook"):
        Q.finetune_codebook(torch.ones(2), torch.tensor([0, 1]), torch.ones(2), lr=-1.0)
    with pytest.raises(ValueError, match="'scale' parameter of dequantize"):
        Q.dequantize(torch.zeros(3, 4, dtype=torch.int8), torch.ones(2), torch.zeros(2), axis=1)
    with pytest.raises(ValueError, match="'numel' parameter of size_bytes"):
        Q.size_bytes(-1, 8)
    with pytest.raises(ValueError, match="'init' parameter of kmeans"):
        Q.kmeans(x, 2, init="forgy")


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_inf_are_refused_where_they_would_become_the_range(bad):
    """One NaN/Inf value was the observed min or max: every scale built on it was NaN/Inf."""
    x = torch.tensor([[0.5, -1.0], [bad, 2.0]])
    with pytest.raises(ValueError, match=r"'x' parameter of observe must be a tensor of finite values"):
        Q.observe(x)
    with pytest.raises(ValueError, match=r"'x' parameter of quantize must be a tensor of finite values"):
        Q.quantize(x, axis=0)
    with pytest.raises(ValueError, match=r"'x' parameter of fake_quantize must be a tensor of finite"):
        Q.fake_quantize(x)
    with pytest.raises(ValueError, match=r"'x' parameter of kmeans must be a tensor of finite values"):
        Q.kmeans(x, 1, init="density")
    with pytest.raises(ValueError, match=r"'codebook' parameter of assign must be a tensor of finite"):
        Q.assign(torch.ones(2), torch.tensor([0.0, bad]).sort().values)
    with pytest.raises(ValueError, match="parameter of qparams"):
        Q.qparams(torch.tensor([-1.0, 0.0]), torch.tensor([1.0, abs(bad)]))


def test_dequantize_and_qparams_refuse_what_is_not_a_range_or_integers():
    with pytest.raises(TypeError, match="'q' parameter of dequantize must be an integer tensor"):
        Q.dequantize(torch.tensor([1.5]), 0.1, 0)
    with pytest.raises(ValueError, match="'scale' parameter of dequantize must be finite and > 0"):
        Q.dequantize(torch.tensor([1]), torch.tensor(math.nan), 0)
    with pytest.raises(ValueError, match="'min_val' parameter of qparams must be a non-empty range"):
        Q.qparams(torch.empty(0), torch.empty(0))
    with pytest.raises(TypeError, match="'min_val' parameter of qparams must be a float or a tensor"):
        Q.qparams(None, 1.0)


def test_inputs_not_modified():
    x = torch.randn(5, 5)
    before = x.clone()
    Q.quantize(x), Q.fake_quantize(x), Q.fixed_point(x, 3), Q.kmeans(x, 2)
    assert torch.equal(x, before)


def test_log2_of_levels():
    assert math.log2(len(Q.kmeans(torch.randn(50), 4)[0])) == 4


def test_restricted_grid_represents_plus_max_and_torch_symmetric_does_not():
    """The two symmetric grids, by hand: at 2 bits x = [−1, 0, 0.5, 2]."""
    x = torch.tensor([-1.0, 0.0, 0.5, 2.0])
    q, s, z = Q.quantize(x, 2, "symmetric")                 # s = 2 / 1.5, q ∈ [−2, 1]
    assert float(s) == pytest.approx(4 / 3) and q.tolist() == [-1, 0, 0, 1]
    assert Q.dequantize(q, s, z).tolist()[-1] == pytest.approx(4 / 3)     # +max → 2/3 of it
    q, s, z = Q.quantize(x, 2, "restricted")                # s = 2 / 1, q ∈ [−1, 1]
    assert float(s) == 2.0 and q.tolist() == [0, 0, 0, 1] and Q.qrange(2, "restricted") == (-1, 1)
    assert Q.dequantize(q, s, z).tolist()[-1] == 2.0
    for bits, top in ((4, 14 / 15), (8, 127 / 127.5)):
        w = torch.tensor([-0.5, 1.0])
        assert float(Q.fake_quantize(w, bits, "symmetric").max()) == pytest.approx(top, rel=1e-6)
        assert float(Q.fake_quantize(w, bits, "restricted").max()) == pytest.approx(1.0, rel=1e-6)


def test_ste_kernel_equals_torch_values_and_gradients():
    x = torch.linspace(-3, 3, 61, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    y = Q.ste(x, 0.05, 10, 0, 100)
    ref = torch.fake_quantize_per_tensor_affine(x_ref, 0.05, 10, 0, 100)
    assert torch.equal(y, ref)
    y.sum().backward(), ref.sum().backward()
    assert torch.equal(x.grad, x_ref.grad)
    with pytest.raises(ValueError, match="'scale' parameter of ste"):
        Q.ste(x, 0.0, 0, 0, 15)
    with pytest.raises(ValueError, match="'q_max' parameter of ste"):
        Q.ste(x, 0.1, 0, 5, 5)


# ------------------------------------------------------------------ group-wise (LLM weights)
@pytest.mark.parametrize("scheme", ["affine", "symmetric"])
@pytest.mark.parametrize("bits,g", [(4, 32), (3, 64), (2, 16), (8, 128)])
def test_groupwise_equals_torch_per_channel_fake_quantize_on_the_groups(scheme, bits, g):
    w = torch.randn(12, 256, generator=torch.Generator().manual_seed(bits))
    groups = w.reshape(-1, g)                         # one row per group
    obs = _observer(bits, scheme, 0)
    obs(groups)
    s, z = obs.calculate_qparams()
    q_min, q_max = Q.qrange(bits, scheme)
    ref = torch.fake_quantize_per_channel_affine(groups, s.float(), z.int(), 0, q_min, q_max).reshape(w.shape)
    assert torch.allclose(Q.groupwise(w, bits, g, scheme), ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("scheme", ["affine", "symmetric"])
def test_groupwise_per_channel_and_per_tensor_special_cases(scheme):
    w = torch.randn(6, 40)
    for g in (None, -1, 40, 1000):
        assert torch.equal(Q.groupwise(w, 4, g, scheme), Q.fake_quantize(w, 4, scheme, axis=0))
    per_tensor = Q.groupwise(w.reshape(1, -1), 4, None, scheme).reshape(w.shape)
    assert torch.equal(per_tensor, Q.fake_quantize(w, 4, scheme))


def test_groupwise_restricted_grid_by_hand_and_the_ragged_last_group():
    # restricted 3-bit: s = max|x| / 3, q ∈ [−3, 3]; group 1 = [3, −1.4, 0.5, 2], group 2 = [−6, 1]
    w = torch.tensor([[3.0, -1.4, 0.5, 2.0, -6.0, 1.0]])
    y = Q.groupwise(w, 3, 4, "restricted")
    assert y[0, :4].tolist() == [3.0, -1.0, 0.0, 2.0]           # round(0.5) = 0: half to even
    assert y[0, 4:].tolist() == [-6.0, 0.0]                       # s = 2: round(1 / 2) = 0
    assert Q.group_range(3, "restricted") == (-3, 3) and Q.group_range(3, "symmetric") == (-4, 3)
    w = torch.randn(5, 200)                                       # 200 = 128 + a group of 72
    y = Q.groupwise(w, 4, 128)
    assert torch.equal(y[:, 128:], Q.groupwise(w[:, 128:], 4, None))
    assert torch.equal(y[:, :128], Q.groupwise(w[:, :128], 4, None))


def test_group_qparams_equal_qparams_of_the_rows():
    w = torch.randn(7, 32)
    for scheme in ("affine", "symmetric"):
        s, z = Q.group_qparams(w, 4, scheme)
        s2, z2 = Q.qparams(*Q.observe(w, axis=0), bits=4, scheme=scheme)
        assert torch.equal(s[:, 0], s2) and torch.equal(z[:, 0], z2.float())
    s, z = Q.group_qparams(w, 4, "restricted")
    assert torch.allclose(s[:, 0], w.abs().amax(1) / 7) and not z.any()


def test_groupwise_error_falls_with_group_size_and_bits():
    w = torch.randn(64, 512, generator=torch.Generator().manual_seed(0))
    err = {(b, g): float(((Q.groupwise(w, b, g) - w) ** 2).mean()) for b in (2, 3, 4, 8) for g in (None, 128, 32)}
    for b in (2, 3, 4, 8):
        assert err[b, 32] < err[b, 128] < err[b, None]
    for g in (None, 128, 32):
        assert err[8, g] < err[4, g] < err[3, g] < err[2, g]


def test_bits_per_weight_by_hand():
    assert Q.bits_per_weight(4, 128, "affine", scale_bits=16) == 4.15625      # 4 + (16 + 4) / 128
    assert Q.bits_per_weight(4, 128, "symmetric") == 4.125                      # no zero point
    assert Q.bits_per_weight(3, 64, "affine", 16, zero_bits=16) == 3.5          # fp16 zero (HQQ-style)
    assert Q.bits_per_weight(4, 32, "restricted") == 4.5
    assert Q.bits_per_weight(8, 768, "affine", 32) == pytest.approx(8 + 40 / 768)   # per channel, fp32 scale
