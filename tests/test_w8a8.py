"""labkit.w8a8: the int8 grid against torch.fake_quantize_*, the W8A8 schemes, LLM.int8()'s
decomposition, bytes by hand, and the per-Linear error report."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labkit import w8a8


def outlier_inputs(n=64, d=32, seed=0, channels=(3, 17), size=40.0):
    """Tokens × channels with a few channels 10–100× the rest (as in a transformer's LayerNorm output)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    x[:, list(channels)] *= size
    return x


# ------------------------------------------------------------------ the grid is torch's
def test_per_tensor_equals_torch_fake_quantize_with_clamping():
    x = torch.randn(200) * 3
    s = w8a8.absmax_scale(torch.tensor(4.0))            # static scale smaller than max|x|: clamps
    assert float(s) == pytest.approx(4.0 / 127)
    ref = torch.fake_quantize_per_tensor_affine(x, float(s), 0, -127, 127)
    assert torch.equal(w8a8.fake_quant(x, s), ref)
    assert torch.equal(w8a8.quantize_activation(x, "static", scale=s), ref)
    assert float(w8a8.fake_quant(torch.tensor([-100.0]), s)) == pytest.approx(-127 * float(s))   # not −128


def test_per_channel_weight_equals_torch():
    w = torch.randn(16, 24) * torch.linspace(0.1, 5, 16).unsqueeze(1)
    s = w.abs().amax(1) / 127
    ref = torch.fake_quantize_per_channel_affine(w, s, torch.zeros(16, dtype=torch.int32), 0, -127, 127)
    assert torch.equal(w8a8.quantize_weight(w, "channel"), ref)
    ref_t = torch.fake_quantize_per_tensor_affine(w, float(w.abs().max() / 127), 0, -127, 127)
    assert torch.equal(w8a8.quantize_weight(w, "tensor"), ref_t)


def test_per_token_dynamic_by_hand_and_against_torch():
    x = torch.randn(2, 5, 12) * torch.arange(1, 11).reshape(2, 5, 1)      # (batch, tokens, channels)
    got = w8a8.quantize_activation(x, "token")
    flat = x.reshape(10, 12)
    s = flat.abs().amax(1) / 127
    ref = torch.fake_quantize_per_channel_affine(flat, s, torch.zeros(10, dtype=torch.int32), 0, -127, 127)
    assert torch.equal(got, ref.reshape(2, 5, 12))
    row = x[1, 3]                                                           # one token by hand
    step = float(row.abs().max()) / 127
    assert torch.allclose(got[1, 3], torch.round(row / step) * step, atol=1e-6)
    per_tensor = torch.fake_quantize_per_tensor_affine(x, float(x.abs().max() / 127), 0, -127, 127)
    assert torch.equal(w8a8.quantize_activation(x, "tensor"), per_tensor)


def test_scales_are_clamped_and_bits_generalize():
    assert float(w8a8.absmax_scale(torch.tensor(0.0))) == pytest.approx(1e-5 / 127)
    x = torch.tensor([0.3, -1.0, 0.55])
    assert w8a8.quantize_activation(x, "tensor", bits=4).tolist() == pytest.approx([2 / 7, -1.0, 4 / 7])


# ------------------------------------------------------------------ the module and the model copy
def test_w8a8_linear_is_fake_quant_of_both_operands():
    lin = nn.Linear(24, 8)
    x = torch.randn(3, 24)
    for act in ("token", "tensor"):
        q = w8a8.W8A8Linear(lin, "channel", act)
        ref = F.linear(w8a8.quantize_activation(x, act), w8a8.quantize_weight(lin.weight.detach()), lin.bias)
        assert torch.equal(q(x), ref)
    static = w8a8.W8A8Linear(lin, "tensor", "static", act_max=torch.full((24,), 2.0))
    assert torch.equal(static(x), F.linear(w8a8.fake_quant(x, torch.tensor(2.0 / 127)),
                                           w8a8.quantize_weight(lin.weight.detach(), "tensor"), lin.bias))


def test_w8a8_returns_a_new_model_and_replaces_by_name():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    before = [p.clone() for p in model.parameters()]
    q = w8a8.w8a8(model, names=["2"])
    assert isinstance(q[0], nn.Linear) and isinstance(q[2], w8a8.W8A8Linear)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert isinstance(model[2], nn.Linear)
    x = torch.randn(5, 8)
    assert not torch.equal(q(x), model(x))
    with pytest.raises(TypeError, match="'act_max' parameter of w8a8"):
        w8a8.w8a8(model, act="static")
    with pytest.raises(ValueError, match="every Linear"):
        w8a8.w8a8(model, act="static", act_max={"0": torch.ones(8)})
    with pytest.raises(ValueError, match="names"):
        w8a8.w8a8(model, names=["1"])
    stats = w8a8.input_absmax(model, x)
    qs = w8a8.w8a8(model, act="static", act_max=stats)
    assert float(qs[0].act_scale) == pytest.approx(float(x.abs().max()) / 127)


def test_input_absmax_by_hand_over_batches_of_a_3d_input():
    model = nn.Sequential(nn.Linear(6, 3))
    x = torch.randn(2, 7, 6)
    got = w8a8.input_absmax(model, x)
    assert torch.equal(got["0"], x.abs().amax(dim=(0, 1)))


# ------------------------------------------------------------------ LLM.int8()
def test_decomposition_without_outliers_is_vector_wise_int8_and_with_all_is_float():
    lin = nn.Linear(32, 8)
    x = outlier_inputs()
    act_max = x.abs().amax(0)
    none = w8a8.Int8DecompLinear(lin, act_max, threshold=1e6)
    assert int(none.outliers.sum()) == 0
    assert torch.allclose(none(x), w8a8.W8A8Linear(lin, "channel", "token")(x), atol=1e-6)
    everything = w8a8.Int8DecompLinear(lin, act_max, threshold=0.0, float_bits=32)
    assert torch.allclose(everything(x), lin(x), atol=1e-5)


def test_decomposition_keeps_the_outlier_channels_and_beats_per_token_int8():
    torch.manual_seed(1)
    lin = nn.Linear(32, 16)
    x = outlier_inputs()
    act_max = x.abs().amax(0)
    dec = w8a8.Int8DecompLinear(lin, act_max)                    # threshold 6.0
    assert dec.outliers.nonzero().flatten().tolist() == [3, 17]
    y = lin(x).detach()
    err = lambda q: float(((q(x) - y) ** 2).sum() / (y ** 2).sum())  # noqa: E731
    assert err(dec) < 0.2 * err(w8a8.W8A8Linear(lin, "channel", "token"))


def test_bytes_by_hand():
    lin = nn.Linear(10, 4)
    # W8A8 per channel: 4·10 int8 + 4 fp32 scales = 40 + 16 = 56; per tensor + static act: 40 + 4 + 4
    assert w8a8.W8A8Linear(lin, "channel", "token").weight_bytes() == 56
    assert w8a8.W8A8Linear(lin, "tensor", "static", act_max=1.0).weight_bytes() == 48
    # LLM.int8 with 2 outlier channels: 4·8 int8 + 4·2 fp16 + 4 fp32 scales = 32 + 16 + 16 = 64
    act_max = torch.ones(10)
    act_max[[1, 5]] = 9.0
    dec = w8a8.Int8DecompLinear(lin, act_max)
    assert dec.weight_bytes() == 64
    model = nn.Sequential(lin, nn.ReLU(), nn.Linear(4, 3))
    assert w8a8.weight_bytes(model) == (40 + 12) * 4
    assert w8a8.weight_bytes(w8a8.llm_int8(model, {"0": act_max, "2": torch.ones(4)})) == 64 + 12 + 12


def test_outlier_weights_are_stored_in_fp16():
    lin = nn.Linear(4, 2)
    dec = w8a8.Int8DecompLinear(lin, torch.tensor([0.0, 7.0, 0.0, 0.0]))
    assert torch.equal(dec.weight_outliers, lin.weight.detach()[:, [1]].half().float())


# ------------------------------------------------------------------ the error report
def test_layer_errors_are_each_layers_own():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(32, 32), nn.GELU(), nn.Linear(32, 8))
    x = outlier_inputs()
    assert w8a8.layer_errors(model, model, x) == {"0": 0.0, "2": 0.0}
    q = w8a8.w8a8(model, act="tensor")
    errs = w8a8.layer_errors(model, q, x)
    with torch.no_grad():
        h = model[1](model[0](x))                                  # the fp32 input of layer 2
        y, y_hat = model[2](h), q[2](h)
    by_hand = float(((y - y_hat) ** 2).sum() / (y ** 2).sum())
    assert errs["2"] == pytest.approx(by_hand, rel=1e-6)
    assert errs["0"] > errs["2"] > 0                               # outliers enter layer 0 only


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="'granularity' parameter of quantize_activation"):
        w8a8.quantize_activation(torch.randn(3), "row")
    with pytest.raises(ValueError, match="'scale' parameter"):
        w8a8.quantize_activation(torch.randn(3), "static")
    with pytest.raises(ValueError, match="'act_max' parameter of Int8DecompLinear"):
        w8a8.Int8DecompLinear(nn.Linear(4, 2), torch.ones(3))
    with pytest.raises(TypeError, match="'inputs' parameter of layer_errors"):
        w8a8.layer_errors(nn.Linear(2, 2), nn.Linear(2, 2), [1, 2])
