"""labkit.mixed: greedy vs dynamic programming bit allocation, sizes, sensitivity; bad input."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from labkit import count, data, mixed, models

# layer A: 8 bits (cost 0, 6 B), 4 bits (1, 4 B), 2 bits (11, 2 B); layer B: 8 (0, 8 B), 4 (3, 3 B)
COSTS = [{8: 0.0, 4: 1.0, 2: 11.0}, {8: 0.0, 4: 3.0}]
SIZES = [{8: 6, 4: 4, 2: 2}, {8: 8, 4: 3}]


def test_greedy_is_not_optimal_dp_is_by_hand():
    # budget 9 from 14: greedy first takes A 8→4 (1 per 2 B = 0.5 < 3 per 5 B = 0.6), is still
    # over (12 B), then B 8→4: cost 4. The optimum narrows B alone: 6 + 3 = 9 B, cost 3.
    g = mixed.greedy(COSTS, SIZES, 9)
    d = mixed.dp(COSTS, SIZES, 9)
    assert g == [4, 4] and mixed.total(g, COSTS, SIZES) == (4.0, 7)
    assert d == [8, 4] and mixed.total(d, COSTS, SIZES) == (3.0, 9)
    assert mixed.brute_force(COSTS, SIZES, 9) == d
    assert mixed.dp(COSTS, SIZES, 100) == [8, 8] == mixed.greedy(COSTS, SIZES, 100)


@st.composite
def tables(draw):
    n_layers = draw(st.integers(1, 5))
    keys = draw(st.lists(st.sampled_from([1, 2, 3, 4, 6, 8]), min_size=1, max_size=4,
                         unique=True))
    costs = [{b: draw(st.floats(0, 10, allow_nan=False)) for b in keys} for _ in range(n_layers)]
    sizes = [{b: draw(st.integers(1, 60)) for b in keys} for _ in range(n_layers)]
    lo = sum(min(s.values()) for s in sizes)
    hi = sum(max(s.values()) for s in sizes)
    budget = draw(st.integers(lo, hi))
    return costs, sizes, budget


@settings(max_examples=300, deadline=None)
@given(tables())
def test_dp_is_optimal_and_never_worse_than_greedy(t):
    costs, sizes, budget = t
    d, g, b = (f(costs, sizes, budget) for f in (mixed.dp, mixed.greedy, mixed.brute_force))
    (cd, md), (cg, mg), (cb, _) = (mixed.total(x, costs, sizes) for x in (d, g, b))
    assert md <= budget and mg <= budget
    assert cd == pytest.approx(cb, abs=1e-9)                 # DP = brute-force optimum
    assert cd <= cg + 1e-9                                   # never worse than greedy


def test_sizes_by_hand():
    m = models.lenet300_100()
    assert count.model_bytes(m) == 4 * 266_610
    # 8-bit weights (266,200 B) + one fp32 scale per output channel (410) + fp32 biases (410)
    assert count.model_bytes(m, 8) == 266_200 + 4 * 410 + 4 * 410
    assert count.model_bytes(m, {"1": 4}) == 235_200 // 2 + 4 * 300 + 4 * 300 + 4 * (30_100 + 1010)
    sizes = mixed.layer_sizes(m, (2, 8), scheme="affine", granularity="tensor")
    assert sizes[2] == {2: (1000 * 2 + 32 + 2) // 8 + 1 + 40, 8: 1000 + 4 + 1 + 40}


def test_sensitivity_table():
    d = data.load_digits(seed=0)
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    s = mixed.sensitivity(m, d.X_val, d.y_val, (1, 16))
    assert list(s.index) == ["1", "3"] and list(s.columns) == [1, 16]
    assert (s[16].abs() < 1e-4).all()
    assert (s[1].abs() > s[16].abs()).all()


def test_bad_input():
    with pytest.raises(ValueError, match="'budget' parameter of dp must be ≥ the smallest"):
        mixed.dp(COSTS, SIZES, 3)
    with pytest.raises(ValueError, match="'budget' parameter of greedy"):
        mixed.greedy(COSTS, SIZES, 3)
    with pytest.raises(ValueError, match="'budget' parameter of dp must be a float"):
        mixed.dp(COSTS, SIZES, -1)
    with pytest.raises(ValueError, match="'sizes' parameter of greedy"):
        mixed.greedy(COSTS, [{8: 1}, {8: 1, 4: 1}], 10)
    with pytest.raises(TypeError, match="'costs' parameter of dp"):
        mixed.dp({8: 1}, SIZES, 10)
    with pytest.raises(ValueError, match="'choice' parameter of total must be 2 keys"):
        mixed.total([8], COSTS, SIZES)                     # one layer short
    with pytest.raises(ValueError, match="'choice' parameter of total"):
        mixed.total([8, 3], COSTS, SIZES)                  # 3 bits is not a choice
    with pytest.raises(ValueError, match="'bits_choices' parameter of sensitivity"):
        mixed.sensitivity(models.lenet300_100(), torch.zeros(2, 784), torch.zeros(2).long(), (0,))
