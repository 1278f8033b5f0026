"""labkit.xnnpack: XNNPACK's int8 kernels, emulated. The kernels are checked by hand here; that the
emulation equals a lowered `.pte` bit for bit is checked in test_mobile.py (one lowering there)."""
import executorch  # noqa: F401  (pinned in pyproject.toml: missing, it must fail here, not skip)
import pytest
import torch
from torch import nn

from labkit.deploy import xnnpack
from test_mobile import tiny


def test_requantize_rounds_half_to_even_and_clamps_in_float_first():
    acc = torch.tensor([5.0, -5.0, 3.0, 7.0, 1000.0, -1000.0], dtype=torch.float64)
    m = torch.tensor(0.5)
    # 2.5 → 2, −2.5 → −2, 1.5 → 2, 3.5 → 4; 500 → min(500, 127 − 3) = 124 → 127; −500 → −128
    assert xnnpack.requantize(acc, m, 3, -128, 127).tolist() == [5, 1, 5, 7, 127, -128]


def test_multiplier_is_float32_left_to_right():
    s_x, s_w, s_y = 0.1, torch.tensor([0.3, 0.7]), 0.03
    f = torch.float32
    expected = (torch.tensor(s_x, dtype=f) * s_w) / torch.tensor(s_y, dtype=f)
    assert torch.equal(xnnpack.multiplier(s_x, s_w, s_y), expected)
    assert xnnpack.multiplier(s_x, s_w, s_y).dtype == torch.float32


def test_bias_int32_by_hand():
    b = torch.tensor([1.0, -0.25, 0.3])
    s_w = torch.tensor([0.5, 0.5, 0.1])
    # 1 / (0.5 · 0.1) = 20 → 20;  −0.25 · 20 = −5;  0.3 / 0.01 = 30 (up to float32 rounding of 0.01)
    assert xnnpack.bias_int32(b, s_w, 0.1).tolist() == [20, -5, 30]


def test_add_multipliers_and_rounding_by_hand():
    # s_a / s_y = 0.5 → exponent −1 → shift 21; M_a = 0.5 · 2^21 = 2^20, M_b = 0.25 · 2^21 = 2^19
    mults = xnnpack.add_multipliers(0.5, 0.25, 1.0)
    assert mults == (2**20, 2**19, 21)
    a = torch.tensor([3.0, 1.0, -1.0, -3.0, 100.0])
    b = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])
    # exact: 0.5a + 0.25b = 1.75, 0.5, −0.5, −1.5, 50 → rounded half up: 2, 1, 0, −1, 50; then + z_y = 10
    out = xnnpack.add(a, 0, b, 0, mults, 10)
    assert out.tolist() == [12, 11, 10, 9, 60]


def test_add_zero_points_enter_the_bias():
    mults = xnnpack.add_multipliers(0.5, 0.5, 0.5)          # both 1.0: y = (a − z_a) + (b − z_b) + z_y
    a, b = torch.tensor([10.0, -128.0, 127.0]), torch.tensor([-3.0, -128.0, 127.0])
    out = xnnpack.add(a, 4, b, -2, mults, -1)
    assert out.tolist() == [(10 - 4) + (-3 + 2) - 1, -128, 127]   # −128 − 4 − 128 + 2 − 1 clamps to −128


def test_mean_rounds_half_to_even():
    # N = 4 positions, same scale in and out, z = 0: means 0.5 → 0, −0.5 → 0, 1.25 → 1, −2.5 → −2, 1.5 → 2
    x = torch.tensor([[1, 0, 0, 1], [-1, 0, 0, -1], [2, 1, 1, 1], [-3, -3, -2, -2], [2, 2, 1, 1]],
                     dtype=torch.float32).view(1, 5, 2, 2)
    assert xnnpack.mean(x, 0, 0.1, 0.1, 0).flatten().tolist() == [0, 0, 1, -2, 2]
    # with z_x = z_y = 5 the rounding sees the zero point: rne(mean + 5) = 5.5 → 6, 4.5 → 4,
    # 6.25 → 6, 2.5 → 2, 6.5 → 6 — not rne(mean) + 5 (= 5, 5, 6, 3, 7)
    assert xnnpack.mean(x + 5, 5, 0.1, 0.1, 5).flatten().tolist() == [6, 4, 6, 2, 6]
    # a scale change: s_x / s_y = 2, z = 0 → 2 · mean: 1, −1, 2.5 → 2, −5, 3
    assert xnnpack.mean(x, 0, 0.2, 0.1, 0).flatten().tolist() == [1, -1, 2, -5, 3]


def test_kernels_refuse_what_xnnpack_never_computes():
    with pytest.raises(ValueError, match=r"'x' parameter of mean must be int8 values \(N, C, H, W\)"):
        xnnpack.mean(torch.empty(0), 0, 0.1, 0.1, 0)                # was an IndexError
    with pytest.raises(ValueError, match="'acc' parameter of requantize must be a tensor of finite values"):
        xnnpack.requantize(torch.tensor([1.0, float("nan")]), torch.tensor(0.5), 0, -128, 127)
    with pytest.raises(ValueError, match="'s_w' parameter of multiplier must be a tensor of finite values"):
        xnnpack.multiplier(0.1, torch.tensor([0.3, float("nan")]), 0.03)
    with pytest.raises(ValueError, match="'s_y' parameter of add_multipliers must be a float in the range"):
        xnnpack.add_multipliers(0.5, 0.5, -1)                       # a scale is > 0
    with pytest.raises(ValueError, match="'z_y' parameter of requantize must be an int in the range"):
        xnnpack.requantize(torch.ones(2), torch.tensor(0.5), 200, -128, 127)
    with pytest.raises(ValueError, match="'bias' parameter of bias_int32 must be one value per channel"):
        xnnpack.bias_int32(torch.ones(3), torch.ones(2), 0.1)
    with pytest.raises(TypeError, match="'multipliers' parameter of add must be the"):
        xnnpack.add(torch.ones(2), 0, torch.ones(2), 0, [1, 1, 20], 0)


def test_clamp_bounds():
    assert xnnpack.clamp_bounds(0.0, 6.0, 6 / 255, -128, -128, 127) == (-128, 127)
    assert xnnpack.clamp_bounds(0.0, 6.0, 0.1, -20, -128, 127) == (-20, 40)
    assert xnnpack.clamp_bounds(0.0, None, 0.1, 3, -128, 127) == (3, 127)


def test_emulation_stays_within_rounding_of_the_reference_and_covers_every_op():
    from labkit.deploy import pt2e

    model = tiny()                                            # conv, ReLU6, depthwise, 1×1, add, pool, linear
    g = torch.Generator().manual_seed(1)
    calib = torch.randn(16, 3, 12, 12, generator=g)
    q = pt2e.quantize_pt2e(model, calib[:1], [calib], method="percentile")
    emulated = xnnpack.emulate(q)
    X = torch.randn(8, 3, 12, 12, generator=g)
    out, ref = emulated(X), q(X)
    assert emulated.reference_ops == set()                  # conv, clamp, add, mean and linear: all emulated
    s = [n for n in q.graph.nodes if "dequantize_per_tensor" in str(n.target)][-1].args[1]
    levels = ((out - ref) / s).round().abs()
    assert levels.max() <= 3                                  # a level or so per op, through 5 ops
    assert (levels > 0).float().mean() < 0.5
    assert torch.allclose(out, ref, atol=4 * s)


def test_emulate_bad_input():
    with pytest.raises(TypeError, match="The 'quantized' parameter of emulate must be"):
        xnnpack.emulate(nn.Linear(2, 2))


class ReluNet(nn.Module):
    """The patterns XNNPACK's quantizer fuses with a ReLU (conv + ReLU, add + ReLU, linear + ReLU)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(x + self.conv2(x))
        x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc2(torch.relu(self.fc1(x)))


def test_relu_fused_patterns_equal_the_program_bit_for_bit(tmp_path):
    from labkit.deploy import mobile, pt2e

    torch.manual_seed(0)
    model = ReluNet().eval()
    g = torch.Generator().manual_seed(2)
    calib = torch.randn(16, 3, 10, 10, generator=g)
    q = pt2e.quantize_pt2e(model, calib[:1], [calib], method="minmax")
    assert any("relu" in str(n.target) for n in q.graph.nodes)
    run = mobile.load(mobile.export(q, tmp_path / "relu.pte", calib[:1]))
    X = torch.randn(200, 3, 10, 10, generator=g)
    emulated = xnnpack.emulate(q)
    out = mobile.predict(run, X)
    assert torch.equal(emulated(X), out) and emulated.reference_ops == set()
    with torch.no_grad():
        assert not torch.equal(q(X), out)                     # the reference graph rounds elsewhere
