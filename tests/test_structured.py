"""labkit.structured: filter norms, the shrunk model equals the zeroed one, shapes, bad input."""
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from labkit import count, models, prune, structured


def test_filter_norms_hand_values():
    w = torch.tensor([[1.0, -2.0], [0.5, 0.5], [-3.0, 0.0]])
    assert torch.equal(structured.filter_norms(w), torch.tensor([3.0, 1.0, 3.0]))
    conv = torch.ones(2, 3, 2, 2)
    conv[1] *= -0.5
    assert torch.equal(structured.filter_norms(conv), torch.tensor([12.0, 6.0]))


def test_keep_filters_rounding_and_ties():
    w = torch.tensor([[3.0], [1.0], [3.0], [2.0]])
    assert structured.keep_filters(w, 0.25).tolist() == [0, 2, 3]         # 1 removed: the smallest
    assert structured.keep_filters(w, 0.5).tolist() == [0, 2]
    assert structured.keep_filters(w, 0.7).tolist() == [0]                # ties: higher index goes
    assert structured.keep_filters(w, 0.99).tolist() == [0]               # at least one kept


def _zeroed_copy(model, amount):
    """The original model with the pruned filters' weights and biases set to 0 (shape unchanged)."""
    z = prune.clone(model)
    layers = [m for m in z.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    with torch.no_grad():
        for m in layers[:-1]:
            keep = structured.keep_filters(m.weight, amount)
            drop = torch.ones(m.weight.shape[0], dtype=torch.bool)
            drop[keep] = False
            m.weight[drop] = 0
            m.bias[drop] = 0
    return z


@settings(max_examples=8, deadline=None)
@given(st.floats(0.0, 0.95), st.integers(0, 3))
def test_shrunk_lenet5_computes_what_the_zeroed_one_does(amount, seed):
    model = models.lenet5(seed=seed)
    small = structured.prune_filters(model, amount)
    x = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    assert torch.allclose(small(x), _zeroed_copy(model, amount)(x), atol=1e-5)


def test_lenet5_shapes_counts_and_original_untouched():
    model = models.lenet5(seed=0)
    small = structured.prune_filters(model, 0.5)
    convs = [m for m in small.modules() if isinstance(m, nn.Conv2d)]
    fcs = [m for m in small.modules() if isinstance(m, nn.Linear)]
    assert [c.out_channels for c in convs] == [3, 8] and convs[1].in_channels == 3
    assert [(f.in_features, f.out_features) for f in fcs] == [(200, 60), (60, 42), (42, 10)]
    # hand count: 3·25+3 + 8·75+8 + 200·60+60 + 60·42+42 + 42·10+10
    assert count.params(small) == 78 + 608 + 12060 + 2562 + 430
    # MACs: 28²·3·25 + 10²·8·3·25 + 200·60 + 60·42 + 42·10
    assert count.macs(small, (1, 28, 28)) == 58800 + 60000 + 12000 + 2520 + 420
    assert count.params(model) == 61706                                    # unchanged


def test_lenet300_100_per_layer_amounts():
    model = models.lenet300_100(seed=0)
    small = structured.prune_filters(model, {"1": 0.5, "3": 0.2})
    assert [m.weight.shape for m in small if isinstance(m, nn.Linear)] == \
        [torch.Size([150, 784]), torch.Size([80, 150]), torch.Size([10, 80])]
    x = torch.randn(4, 784)
    z = prune.clone(model)
    with torch.no_grad():
        for name, a in {"1": 0.5, "3": 0.2}.items():
            m = dict(z.named_modules())[name]
            drop = torch.ones(m.out_features, dtype=torch.bool)
            drop[structured.keep_filters(m.weight, a)] = False
            m.weight[drop], m.bias[drop] = 0, 0
    assert torch.allclose(small(x), z(x), atol=1e-5)


def test_a_masked_model_is_pruned_with_its_masks_folded():
    """One rule for every labkit function that copies a model (issue 15): prune.clone folds masks."""
    masked = prune.magnitude_(models.lenet5(seed=0), 0.5)
    masked(torch.zeros(1, 1, 28, 28))                              # weight is now a computed tensor
    small = structured.prune_filters(masked, 0.5)
    folded = structured.prune_filters(prune.remove_(prune.clone(masked)), 0.5)
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert prune.masks(small) == {} and torch.equal(small(x), folded(x))
    assert prune.masks(masked)                                     # the model keeps its masks


def test_bad_input():
    model = models.lenet5()
    with pytest.raises(ValueError, match=r"The 'amount' parameter of prune_filters must be a float in the range \[0, 1\)"):
        structured.prune_filters(model, 1.0)
    with pytest.raises(TypeError, match="'amount' parameter of prune_filters"):
        structured.prune_filters(model, None)
    with pytest.raises(ValueError, match="'amount' parameter of prune_filters"):
        structured.prune_filters(model, {"classifier.5": 0.5})              # the output layer
    with pytest.raises(ValueError, match="chain of Linear/Conv2d"):
        structured.prune_filters(nn.Sequential(nn.Conv1d(1, 2, 3)), 0.5)
    with pytest.raises(TypeError, match="'model' parameter"):
        structured.prune_filters("lenet5", 0.5)
    with pytest.raises(ValueError, match="'w' parameter of filter_norms"):
        structured.filter_norms(torch.ones(3))
