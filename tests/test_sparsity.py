import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from labkit import models, sparsity

W = torch.tensor([[1., 2, 0, 3], [4, 0, 5, 6], [7, 8, 0, 9]])


def test_seed_001_matrix_by_hand():
    assert sparsity.density(W) == 9 / 12
    assert sparsity.sparsity(W) == pytest.approx(3 / 12)


def test_model_density_counts_only_linear_and_conv_weights():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2))
    with torch.no_grad():
        model[0].weight.zero_()          # 12 zeros of 12 + 6 = 18 weights
        model[0].bias.zero_()            # biases are not counted
    assert sparsity.density(model) == pytest.approx(6 / 18)


def test_report_rows_and_total():
    model = models.lenet5()
    with torch.no_grad():
        model.features[0].weight[:3] = 0          # 3 of 6 filters of 25 weights
    df = sparsity.report(model)
    assert list(df["layer"]) == ["features.0", "features.3", "classifier.1", "classifier.3",
                                 "classifier.5", "total"]
    assert df["params"].iloc[-1] == df["params"].iloc[:-1].sum() == 61470
    assert df.loc[0, "nonzero"] == 75 and df.loc[0, "density"] == 0.5
    assert df["nonzero"].iloc[-1] == 61470 - 75
    assert df["sparsity"].iloc[-1] == pytest.approx(75 / 61470)


def test_empty_tensor_is_dense_by_definition():
    assert sparsity.density(torch.empty(0)) == 1.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-10, 10, allow_nan=False, width=32), min_size=1, max_size=60))
def test_density_in_unit_interval_and_complements_sparsity(values):
    x = torch.tensor(values)
    rho = sparsity.density(x)
    assert 0.0 <= rho <= 1.0
    assert rho + sparsity.sparsity(x) == pytest.approx(1.0)
    assert rho == pytest.approx(sum(v != 0 for v in values) / len(values))


def test_bad_input():
    with pytest.raises(TypeError, match="'x' parameter of density must be a torch.Tensor or"):
        sparsity.density([1, 0])
    with pytest.raises(ValueError, match="at least one Linear or Conv layer"):
        sparsity.density(nn.ReLU())
    with pytest.raises(TypeError, match="'model' parameter of report"):
        sparsity.report(W)
