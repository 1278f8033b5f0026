"""Threshold pruning (seed 001 §4): hand values, properties, the mask mechanism, bad input."""
import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils import prune as torch_prune

from labkit import models, prune, sparsity, train

W = torch.tensor([[1., 2, 0, 3], [4, 0, 5, 6], [7, 8, 0, 9]])


def test_seed_001_worked_example_corrected():
    out = prune.threshold(W, 2)
    assert torch.equal(out, torch.tensor([[0., 2, 0, 3], [4, 0, 5, 6], [7, 8, 0, 9]]))
    assert torch.count_nonzero(out) == 8
    assert round(sparsity.density(out), 3) == 0.667


def test_strict_inequality_keeps_weights_equal_to_tau():
    w = torch.tensor([-2.0, -1.5, 1.5, 2.0, 2.5])
    assert prune.threshold(w, 2.0).tolist() == [-2.0, 0.0, 0.0, 2.0, 2.5]
    assert prune.threshold_mask(w, 2.0).tolist() == [True, False, False, True, True]


def test_tau_zero_changes_nothing():
    w = torch.randn(5, 5)
    assert torch.equal(prune.threshold(w, 0.0), w)


tensors = st.lists(st.floats(-5, 5, allow_nan=False, width=32), min_size=1, max_size=50).map(torch.tensor)
taus = st.floats(0, 6, allow_nan=False)


@settings(max_examples=80, deadline=None)
@given(tensors, taus, taus)
def test_properties_idempotent_monotone_pure(w, t1, t2):
    original = w.clone()
    once = prune.threshold(w, t1)
    assert torch.equal(w, original)                             # never mutates its input
    assert torch.equal(prune.threshold(once, t1), once)         # idempotent
    lo, hi = sorted((t1, t2))
    assert sparsity.density(prune.threshold(w, hi)) <= sparsity.density(prune.threshold(w, lo))
    kept = once != 0
    assert torch.equal(once[kept], w[kept])                     # survivors are unchanged
    assert bool((w[~kept].abs() < t1).all() | (w[~kept] == 0).all())


def test_agrees_with_torch_l1_unstructured_at_the_same_count():
    torch.manual_seed(0)
    layer = nn.Linear(50, 40)
    w = layer.weight.detach().clone()
    k = 700
    tau = float(w.abs().flatten().kthvalue(k + 1).values)
    torch_prune.l1_unstructured(layer, "weight", amount=k)
    assert torch.equal(prune.threshold_mask(w, tau), layer.weight_mask.bool())


def test_threshold_model_masks_survive_training_and_remove_makes_permanent():
    torch.manual_seed(0)
    X, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    model = models.lenet300_100()
    first = model[1]
    param = first.weight                                       # the Parameter an optimizer holds
    prune.threshold_(model, 0.03)
    assert first.weight_orig is param
    zeros = {n: int((m == 0).sum()) for n, m in prune.masks(model).items()}
    assert zeros["1"] > 0
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    train.fit(model, X, y, epochs=3, lr=0.5, max_shift=0, progress=False, optimizer=opt)
    for name, layer in model.named_modules():
        if name in zeros:
            assert int((layer.weight == 0).sum()) >= zeros[name]
            assert torch.equal(layer.weight[~layer.weight_mask.bool()],
                               torch.zeros(zeros[name]))
    rho = sparsity.density(model)
    prune.remove_(model)
    assert prune.masks(model) == {}
    assert first.weight is param and sparsity.density(model) == rho


def test_second_threshold_only_grows_the_pruned_set():
    model = models.lenet300_100()
    prune.threshold_(model, 0.02)
    s1 = sparsity.sparsity(model)
    prune.threshold_(model, 0.01)                               # smaller τ: nothing comes back
    assert sparsity.sparsity(model) == s1
    prune.threshold_(model, 0.04)
    assert sparsity.sparsity(model) > s1


@pytest.mark.parametrize("tau", [-0.1, math.nan, math.inf * -1])
def test_bad_tau_is_value_error_naming_range(tau):
    with pytest.raises(ValueError, match=r"The 'tau' parameter of threshold must be a float in the range \[0, inf\)"):
        prune.threshold(W, tau)


def test_bad_types():
    with pytest.raises(TypeError, match="'w' parameter of threshold must be a torch.Tensor"):
        prune.threshold([[1.0, 2.0]], 1.0)
    with pytest.raises(TypeError, match="'tau' parameter"):
        prune.threshold(W, "2")
    with pytest.raises(ValueError, match="'model' parameter of threshold_ must be a model with at least one"):
        prune.threshold_(nn.Sequential(nn.ReLU(), nn.Dropout()), 0.1)
    with pytest.raises(TypeError, match="'model' parameter of threshold_"):
        prune.threshold_(W, 0.1)
    with pytest.raises(ValueError, match="'tau' parameter of threshold_"):
        prune.threshold_(models.lenet5(), -1.0)


def test_threshold_does_not_touch_model_weights_copy():
    model = models.lenet5()
    before = copy.deepcopy(model.state_dict())
    prune.threshold(model.features[0].weight.detach(), 0.1)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
