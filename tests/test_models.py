import pytest
import torch

from labkit import models


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_lenet300_100_shape_and_size():
    m = models.lenet300_100()
    assert n_params(m) == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10 == 266_610
    assert m(torch.zeros(4, 1, 28, 28)).shape == (4, 10)
    assert m(torch.zeros(4, 784)).shape == (4, 10)


def test_lenet5_shape_and_size():
    m = models.lenet5()
    # conv1 6·(25+1), conv2 16·(6·25+1), fc 400·120+120, 120·84+84, 84·10+10
    assert n_params(m) == 156 + 2416 + 48120 + 10164 + 850 == 61_706
    assert m(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_seeded_init_is_repeatable_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    state = torch.random.get_rng_state()
    a, b = models.lenet5(seed=7), models.lenet5(seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert not torch.equal(models.lenet5(seed=8).features[0].weight, a.features[0].weight)


def test_bad_arguments():
    with pytest.raises(ValueError, match="'num_classes' parameter of lenet5"):
        models.lenet5(num_classes=1)
    with pytest.raises(TypeError, match="'seed' parameter of lenet300_100"):
        models.lenet300_100(seed=1.5)
