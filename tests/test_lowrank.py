"""labkit.lowrank: Eckart–Young error, exactness at full rank, energy rule, model factorization."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from labkit import count, lowrank, models


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(0, 10_000), st.data())
def test_svd_error_is_norm_of_dropped_singular_values(m, n, seed, data):
    W = torch.randn(m, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    r = data.draw(st.integers(1, min(m, n)))
    A, B = lowrank.svd_factors(W, r)
    S = torch.linalg.svdvals(W)
    assert A.shape == (m, r) and B.shape == (r, n)
    err = torch.linalg.norm(W - A @ B)                         # Frobenius
    assert err.item() == pytest.approx(S[r:].norm().item(), abs=1e-9)
    # Eckart–Young: no other rank-r matrix does better; try a random one from the same span
    C = torch.randn(m, r, dtype=torch.float64) @ torch.randn(r, n, dtype=torch.float64)
    assert err <= torch.linalg.norm(W - C) + 1e-9


def test_hand_computed_rank_one():
    W = torch.tensor([[3.0, 0.0], [0.0, 1.0]])                # σ = 3, 1
    A, B = lowrank.svd_factors(W, 1)
    torch.testing.assert_close(A @ B, torch.tensor([[3.0, 0.0], [0.0, 0.0]]))
    assert lowrank.rank_for_energy(torch.tensor([3.0, 1.0]), 0.9) == 1     # 9/10 kept
    assert lowrank.rank_for_energy(torch.tensor([3.0, 1.0]), 0.91) == 2
    assert lowrank.rank_for_energy(torch.tensor([3.0, 1.0]), 1.0) == 2


def test_svd_linear_full_rank_is_exact_and_original_unchanged():
    torch.manual_seed(0)
    layer = nn.Linear(20, 30)
    before = layer.weight.detach().clone()
    f = lowrank.svd_linear(layer, 20)
    x = torch.randn(5, 20)
    torch.testing.assert_close(f(x), layer(x), atol=1e-5, rtol=1e-5)
    assert torch.equal(layer.weight, before)
    assert [tuple(l.weight.shape) for l in f] == [(20, 20), (30, 20)]
    assert f[0].bias is None and torch.equal(f[1].bias, layer.bias)


def test_svd_linear_product_is_truncated_svd():
    torch.manual_seed(1)
    layer = nn.Linear(50, 40)
    f = lowrank.svd_linear(layer, 7)
    U, S, Vh = torch.linalg.svd(layer.weight.detach().double(), full_matrices=False)
    Wr = (U[:, :7] * S[:7]) @ Vh[:7]
    torch.testing.assert_close((f[1].weight @ f[0].weight).double(), Wr, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1)])
def test_svd_conv2d_full_rank_is_exact_and_error_matches(stride, padding):
    torch.manual_seed(2)
    conv = nn.Conv2d(3, 8, 3, stride=stride, padding=padding)
    x = torch.randn(2, 3, 11, 11)
    torch.testing.assert_close(lowrank.svd_conv2d(conv, 8)(x), conv(x), atol=1e-5, rtol=1e-5)
    f = lowrank.svd_conv2d(conv, 3)
    assert tuple(f[0].weight.shape) == (3, 3, 3, 3) and tuple(f[1].weight.shape) == (8, 3, 1, 1)
    W = conv.weight.detach().reshape(8, -1)
    Wr = f[1].weight.reshape(8, 3) @ f[0].weight.reshape(3, -1)
    S = torch.linalg.svdvals(W)
    assert torch.linalg.norm(W - Wr).item() == pytest.approx(S[3:].norm().item(), rel=1e-4)


def test_factorize_lenet300_by_rank_and_energy():
    model = models.lenet300_100(seed=0)
    small = lowrank.factorize(model, rank=20)
    # 784-300: 20·(784+300) + 300; 300-100: 20·400 + 100; 100-10: 10 is not smaller → kept
    assert small.lowrank_ranks == {"1": 20, "3": 20}
    assert count.params(small) == 20 * 1084 + 300 + 20 * 400 + 100 + 1010
    assert count.params(model) == 266_610                # the original is untouched
    x = torch.randn(4, 1, 28, 28)
    assert small(x).shape == (4, 10)
    full = lowrank.factorize(model, energy=1.0, only_if_smaller=False)
    torch.testing.assert_close(full(x), model(x), atol=1e-4, rtol=1e-4)
    by_dict = lowrank.factorize(model, rank={"3": 5})
    assert by_dict.lowrank_ranks == {"3": 5}


def test_factorize_lenet5_convs():
    model = models.lenet5(seed=0)
    f = lowrank.factorize(model, rank=4, skip=("classifier.5",))
    assert "features.3" in f.lowrank_ranks and "classifier.5" not in f.lowrank_ranks
    assert f(torch.randn(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("call, exc", [
    (lambda: lowrank.svd_linear(nn.Conv2d(1, 2, 3), 1), TypeError),
    (lambda: lowrank.svd_linear(nn.Linear(4, 3), 4), ValueError),
    (lambda: lowrank.svd_linear(nn.Linear(4, 3), 0), ValueError),
    (lambda: lowrank.svd_linear(nn.Linear(4, 3), 1.5), TypeError),
    (lambda: lowrank.svd_conv2d(nn.Conv2d(4, 4, 3, groups=2), 1), ValueError),
    (lambda: lowrank.svd_factors(torch.zeros(3), 1), ValueError),
    (lambda: lowrank.rank_for_energy(torch.ones(3), 0.0), ValueError),
    (lambda: lowrank.rank_for_energy(torch.ones(3), 1.5), ValueError),
    (lambda: lowrank.factorize(models.lenet300_100(), rank=3, energy=0.5), ValueError),
    (lambda: lowrank.factorize(models.lenet300_100()), ValueError),
    (lambda: lowrank.factorize(models.lenet300_100(), rank={"nope": 3}), ValueError),
    (lambda: lowrank.factorize("model", rank=3), TypeError),
])
def test_bad_input(call, exc):
    with pytest.raises(exc, match="parameter of"):
        call()
