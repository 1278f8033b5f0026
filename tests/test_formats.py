"""labkit.formats: bit-exact against torch's float8 dtypes and torchao's MX / NVFP4 / FP4 kernels,
value tables by hand, NF4 against bitsandbytes' table and QLoRA's construction, bits per weight."""
import warnings

import pytest
import torch

from labkit import formats as F

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from torchao.prototype.mx_formats.kernels import f4_unpacked_to_f32, f32_to_f4_unpacked
    from torchao.prototype.mx_formats.mx_tensor import to_dtype, to_mx
    from torchao.prototype.mx_formats.nvfp4_tensor import NVFP4Tensor, per_tensor_amax_to_scale
    from torchao.quantization import NF4Tensor

TORCH_DTYPE = {"fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}


def _wide(n=50_000, seed=0):
    """Values across ~40 binades, plus every level, every midpoint and the saturating range."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g) * torch.exp2(torch.randint(-24, 20, (n,), generator=g).float())
    return x


# ------------------------------------------------------------------ element casts
@pytest.mark.parametrize("elem", ["fp8_e4m3", "fp8_e5m2"])
def test_cast_equals_torch_float8_after_clamping(elem):
    vmax = F.ELEMENTS[elem][2]
    assert vmax == torch.finfo(TORCH_DTYPE[elem]).max
    levels = F.values(elem)
    mids = (levels[1:] + levels[:-1]) / 2                  # every tie: round half to even
    x = torch.cat([_wide(), levels, mids, torch.tensor([1e6, -1e6, 465.0, 479.0, 6e4])])
    ref = x.clamp(-vmax, vmax).to(TORCH_DTYPE[elem]).float()
    assert torch.equal(F.cast(x, elem), ref)


@pytest.mark.parametrize("elem", ["fp8_e4m3", "fp8_e5m2"])
def test_value_table_is_every_finite_code_of_the_torch_dtype(elem):
    codes = torch.arange(256, dtype=torch.uint8).view(TORCH_DTYPE[elem]).float()
    assert torch.equal(F.values(elem), codes[torch.isfinite(codes)].unique())
    assert len(F.values(elem)) == {"fp8_e4m3": 253, "fp8_e5m2": 247}[elem]   # 256 − NaN/Inf − (−0)


def test_fp4_e2m1_table_by_hand_and_torchao():
    pos = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
    assert F.values("fp4_e2m1").tolist() == sorted({-v for v in pos} | set(pos))
    assert F.values("fp4_e2m1").tolist() == f4_unpacked_to_f32(torch.arange(16, dtype=torch.uint8)).unique().tolist()
    # ties by hand: 0.25 → 0, 0.75 → 1, 1.25 → 1, 2.5 → 2, 5 → 4 (even mantissa), 7 → 6 (saturates)
    x = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 7.0, -0.3, 100.0])
    assert F.cast(x, "fp4_e2m1").tolist() == [0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 6.0, -0.5, 6.0]
    y = torch.cat([_wide().clamp(-6, 6), x.clamp(-6, 6)])
    assert torch.equal(F.cast(y, "fp4_e2m1"), f4_unpacked_to_f32(f32_to_f4_unpacked(y)))


def test_torch_float4_dtype_cannot_cast_on_cpu_so_torchao_is_the_reference():
    """torch.float4_e2m1fn_x2 exists (packed pairs) but torch 2.13 has no CPU cast to it."""
    with pytest.raises((NotImplementedError, RuntimeError)):
        torch.tensor([0.5, 1.0]).to(torch.float4_e2m1fn_x2)


# ------------------------------------------------------------------ block formats
@pytest.mark.parametrize("fmt,dtype", [("mxfp4", torch.float4_e2m1fn_x2), ("mxfp8", torch.float8_e4m3fn)])
@pytest.mark.parametrize("seed", [0, 1])
def test_mx_equals_torchao_to_mx(fmt, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(48, 256, generator=g) * torch.exp2(torch.randint(-8, 8, (48, 1), generator=g).float())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scale, data = to_mx(w, dtype, 32)
        ref = to_dtype(data, scale, dtype, 32, torch.float32)
    assert torch.equal(F.fake_quantize(w, fmt), ref)


def test_mx_shared_scale_by_hand():
    # amax 5 → ⌊log₂ 5⌋ = 2, E2M1 e_max = 2: X = 2^0 = 1; amax 0.3 → ⌊log₂⌋ = −2: X = 2^−4
    x = torch.zeros(2, 32)
    x[0, :3] = torch.tensor([5.0, 2.2, -0.7])
    x[1, :2] = torch.tensor([0.3, 0.01])
    y = F.fake_quantize(x, "mxfp4")
    assert y[0, :3].tolist() == [4.0, 2.0, -0.5]
    assert y[1, :2].tolist() == [0.25, 0.0]           # 0.3·16 = 4.8 → 4 (step 2 above 4), 0.16 → 0
    assert y[0, 3:].abs().sum() == 0


@pytest.mark.parametrize("seed", [0, 1])
def test_nvfp4_equals_torchao_two_level(seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(32, 128, generator=g) * torch.exp2(torch.randint(-6, 6, (32, 1), generator=g).float())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = NVFP4Tensor.to_nvfp4(w, per_tensor_scale=per_tensor_amax_to_scale(w.abs().max()))
        ref = t.dequantize(torch.float32)
    assert torch.equal(F.fake_quantize(w, "nvfp4"), ref)


def test_int_blocks_by_hand():
    # block of 32 with absmax 7: s = 1 (exact in fp16); values round half to even and clip at ±7
    x = torch.zeros(1, 64)
    x[0, :4] = torch.tensor([7.0, 2.5, -3.4, 0.5])
    x[0, 32] = 1.0                                      # second block: s = 1/7, exact levels k/7
    x[0, 33] = 0.5
    y = F.fake_quantize(x, "int4")
    assert y[0, :4].tolist() == [7.0, 2.0, -3.0, 0.0]
    s = float(torch.tensor(1 / 7).half())               # the stored fp16 scale
    assert y[0, 32].item() == pytest.approx(7 * s, abs=0) and y[0, 33].item() == pytest.approx(round(0.5 / s) * s)
    q = F.fake_quantize(torch.linspace(-1, 1, 32), "int8")
    assert len(q.unique()) <= 255 and float((q - torch.linspace(-1, 1, 32)).abs().max()) <= 0.5 / 127 + 1e-6


def test_per_tensor_float_formats_are_scaled_casts():
    w = torch.randn(16, 64) * 0.02
    for fmt in ("fp8_e4m3", "fp8_e5m2"):
        s = w.abs().max() / F.ELEMENTS[fmt][2]
        ref = (w / s).to(TORCH_DTYPE[fmt]).float() * s
        assert torch.equal(F.fake_quantize(w, fmt), ref)
    assert F.fake_quantize(w, "fp4_e2m1").div(w.abs().max() / 6).round(decimals=4).unique().numel() <= 15


# ------------------------------------------------------------------ NF4
def test_nf4_levels_are_bitsandbytes_and_qlora_construction():
    assert len(F.NF4) == 16 and F.NF4[7] == 0 and F.NF4[0] == -1 and F.NF4[-1] == 1
    assert torch.allclose(F.nf4_levels(), F.NF4, atol=1e-6, rtol=0)
    # the paper's construction: the positive levels are N(0,1) quantiles (8 of them), normalized
    assert F.NF4[8].item() == pytest.approx(0.07958029955625534)
    torchao_nf4 = [-1.0, -0.6962, -0.5251, -0.3949, -0.2844, -0.1848, -0.0911, 0.0, 0.0796, 0.1609,
                   0.2461, 0.3379, 0.4407, 0.5626, 0.7230, 1.0]      # torchao's 4-digit table
    assert torch.allclose(F.NF4, torch.tensor(torchao_nf4), atol=5e-5)


def test_nf4_codes_equal_torchao_nearest_level():
    w = torch.randn(8, 256, generator=torch.Generator().manual_seed(3))
    y = F.fake_quantize(w, "nf4")
    blocks = w.reshape(-1, 64)
    amax = blocks.abs().amax(1, keepdim=True)
    ours = (y.reshape(-1, 64, 1) / amax[..., None] - F.NF4).abs().argmin(-1)   # index of each level
    theirs = NF4Tensor.quantize_tensor_nearest((blocks / amax).flatten(), F.NF4).reshape(-1, 64)
    assert torch.equal(ours, theirs)
    assert torch.allclose(y.reshape(-1, 64), F.NF4[theirs] * amax)


# ------------------------------------------------------------------ shapes, sizes, tables
@pytest.mark.parametrize("fmt", F.FORMATS)
def test_same_shape_and_dtype_and_a_ragged_last_block_is_its_own_block(fmt):
    B = F.BLOCK.get(fmt, 16)
    x = torch.randn(3, 5, B + 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = F.fake_quantize(x, fmt)
    assert y.shape == x.shape and y.dtype == x.dtype and not torch.equal(y, x)
    assert torch.equal(F.fake_quantize(torch.zeros(2, 32), fmt), torch.zeros(2, 32))
    if fmt in F.BLOCK and fmt != "nvfp4":               # no per-tensor scale: blocks are independent
        assert torch.equal(F.fake_quantize(x[..., :B], fmt), y[..., :B])
        assert torch.equal(F.fake_quantize(x[..., B:], fmt), y[..., B:])
        assert torch.equal(F.fake_quantize(x, fmt, block_size=-1), F.fake_quantize(x, fmt, block_size=B + 8))


def test_bits_per_weight_by_hand():
    expect = {"int8": 8.5, "int4": 4.5, "fp8_e4m3": 8, "fp8_e5m2": 8, "fp4_e2m1": 4, "nf4": 4.5,
              "mxfp4": 4.25, "mxfp8": 8.25, "nvfp4": 4.5}
    assert {f: F.bits_per_weight(f) for f in F.FORMATS} == expect
    assert F.bits_per_weight("int4", 128) == 4 + 16 / 128


def test_table_ranks_at_four_and_a_half_bits():
    w = torch.randn(64, 512, generator=torch.Generator().manual_seed(0))
    rows = F.table(w, ["nf4", "nvfp4", "int4", "mxfp4", "fp4_e2m1"])
    assert [r["fmt"] for r in rows][0] == "fp4_e2m1"      # 4 bits, the only one below 4.25
    mse = {r["fmt"]: r["mse"] for r in rows}
    assert mse["nf4"] < mse["int4"] and mse["nvfp4"] < mse["mxfp4"] < mse["fp4_e2m1"]   # Gaussian weights


@pytest.mark.parametrize("bad,err", [(("x", "nf4"), TypeError), ((torch.ones(4), "fp6"), ValueError),
                                     ((torch.tensor([1.0, float("nan")]), "nf4"), ValueError)])
def test_bad_input_is_named(bad, err):
    with pytest.raises(err, match="parameter of fake_quantize must be"):
        F.fake_quantize(*bad)
