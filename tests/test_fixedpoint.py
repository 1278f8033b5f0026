"""labkit.deploy.fixedpoint against hand-computed values, against gemmlowp's two integer steps
written out on Python ints (C's truncating division and arithmetic shifts), and against the real
requantization clamp(z + round(M · acc)) on random cases."""
import math
import random

import pytest
import torch

from labkit.deploy import fixedpoint as fp


def srdhm(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul(int32 a, int32 b), on Python ints."""
    if a == b == -2**31:
        return 2**31 - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    q = abs(ab + nudge) // 2**31                      # C: (ab + nudge) / (1ll << 31) truncates to 0
    return q if ab + nudge >= 0 else -q


def rdbpot(x: int, exponent: int) -> int:
    """gemmlowp RoundingDivideByPOT(int32 x, exponent)."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def tflite(acc: int, M0: int, n: int) -> int:
    """TFLite's MultiplyByQuantizedMultiplier(acc, M0, shift = −n)."""
    left, right = max(-n, 0), max(n, 0)
    return rdbpot(srdhm(acc * (1 << left), M0), right)


def test_multipliers_by_hand():
    assert fp.fixed_point_multiplier(0.5) == (2**30, 0)
    assert fp.fixed_point_multiplier(0.75) == (3 * 2**29, 0)
    assert fp.fixed_point_multiplier(0.25) == (2**30, 1)
    assert fp.fixed_point_multiplier(0.1) == (round(0.8 * 2**31), 3)        # 0.1 = 0.8 · 2⁻³
    assert fp.fixed_point_multiplier(2.0**-32) == (2**30, 31)
    assert fp.fixed_point_multiplier(1 - 2.0**-40) == (2**30, -1)           # rounds up to 2³¹: halved
    assert fp.fixed_point_multiplier(0.5 + 2.0**-32) == (2**30 + 1, 0)      # a tie: away from zero


def test_multiplier_represents_M_within_half_a_unit_of_M0():
    g = random.Random(0)
    for _ in range(2000):
        M = math.exp(g.uniform(math.log(2.0**-32), 0))
        M0, n = fp.fixed_point_multiplier(M)
        assert 2**30 <= M0 < 2**31 and -1 <= n <= 31
        assert abs(M0 * 2.0 ** (-31 - n) - M) <= 2.0 ** (-32 - n), (M, M0, n)


def test_requantize_by_hand():
    half = fp.fixed_point_multiplier(0.5)                                  # (2³⁰, 0)
    got = fp.requantize(torch.tensor([3, -3, 1, -1, 4], dtype=torch.int32), *half, 0)
    assert got.tolist() == [2, -1, 1, 0, 2]             # h's ties round up: 1.5 → 2, −1.5 → −1, −0.5 → 0
    quarter = fp.fixed_point_multiplier(0.25)                              # (2³⁰, 1): two roundings
    # 6 → 3 → 1.5 → 2; −6 → −3 → −1.5 → −2 (clamped at −128); 5 → 2.5 → 3 → 1.5 → 2, where the real
    # 5 · 0.25 = 1.25 rounds to 1: the first rounding is by half a unit of h, 2⁻ⁿ⁻¹ of an output level
    assert fp.requantize(torch.tensor([6, -6, 5, 1000]), *quarter, -128).tolist() == [-126, -128, -126, 122]
    assert fp.requantize(torch.tensor([10**6]), *half, 5, q_min=0, q_max=255).tolist() == [255]


def test_requantize_equals_gemmlowp_step_by_step():
    g = random.Random(1)
    for _ in range(300):
        M0, n = fp.fixed_point_multiplier(math.exp(g.uniform(math.log(2.0**-32), 0)))
        acc = [g.randint(-2**31, 2**31 - 1) for _ in range(8)] + [g.randint(-4096, 4096) for _ in range(8)]
        want = [min(max(tflite(a, M0, n) + 3, -2**31), 2**31 - 1) for a in acc]
        got = fp.requantize(torch.tensor(acc, dtype=torch.int64), M0, n, 3, q_min=-2**31, q_max=2**31 - 1)
        assert got.tolist() == want, (M0, n)


def test_requantize_is_the_real_requantization_up_to_ties():
    gen = torch.Generator().manual_seed(2)
    for i in range(50):
        s_w = 0.001 + 0.05 * torch.rand(16, generator=gen, dtype=torch.float64)   # per output channel
        s_x, s_y = 0.02 + 0.01 * i / 50, 6 / 255
        M = s_w * s_x / s_y                                                          # (16,) in (0, 1)
        pairs = [fp.fixed_point_multiplier(float(m)) for m in M]
        M0 = torch.tensor([p[0] for p in pairs])[:, None]
        n = torch.tensor([p[1] for p in pairs])[:, None]
        acc = torch.randint(-2**20, 2**20, (16, 64), generator=gen, dtype=torch.int32)
        got = fp.requantize(acc, M0, n, -128)
        real = M[:, None] * acc.double()
        want = (torch.sign(real) * torch.floor(real.abs() + 0.5) - 128).clamp(-128, 127)   # half away
        assert (got - want).abs().max() <= 1
        slack = (0.5 + acc.abs().double() * 2.0**-32) * 2.0 ** -n.double()   # h's rounding and M0's
        far = ((real.abs() % 1) - 0.5).abs() > slack                   # farther than that from a tie
        assert far.float().mean() > 0.9                                 # the check covers most cases
        assert torch.equal(got[far], want[far].long()), i


def test_per_channel_tensors_broadcast_and_nothing_is_modified():
    acc = torch.tensor([[100, -100], [7, 9]], dtype=torch.int32)
    before = acc.clone()
    M0 = torch.tensor([[2**30], [3 * 2**29]])
    n = torch.tensor([[2], [0]])
    got = fp.requantize(acc, M0, n, 0)
    assert got.tolist() == [[13, -13], [5, 7]]                  # 100/8 = 12.5 → 13; 7·0.75 = 5.25, 9·0.75 = 6.75
    assert torch.equal(acc, before)


def test_bad_input():
    with pytest.raises(ValueError, match=r"The 'M' parameter of fixed_point_multiplier must be a float in the range \["):
        fp.fixed_point_multiplier(1.0)
    with pytest.raises(ValueError, match="The 'M' parameter of fixed_point_multiplier"):
        fp.fixed_point_multiplier(0.0)
    with pytest.raises(TypeError, match="The 'acc' parameter of requantize must be an integer tensor"):
        fp.requantize(torch.tensor([1.5]), 2**30, 0, 0)
    with pytest.raises(ValueError, match="The 'acc' parameter of requantize must be int32 values"):
        fp.requantize(torch.tensor([2**31]), 2**30, 0, 0)
    with pytest.raises(ValueError, match="The 'M0' parameter of requantize must be an int in the range"):
        fp.requantize(torch.tensor([1]), 2**29, 0, 0)
    with pytest.raises(ValueError, match="The 'n' parameter of requantize must be broadcastable"):
        fp.requantize(torch.tensor([1, 2, 3]), 2**30, torch.tensor([1, 2]), 0)
    with pytest.raises(ValueError, match="The 'z_y' parameter of requantize must be an int in the range"):
        fp.requantize(torch.tensor([1]), 2**30, 0, 200)
