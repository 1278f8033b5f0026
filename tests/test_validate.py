import math

import pytest
import torch
from torch import nn

from labkit.validate import check_choice, check_float, check_int, check_tensor, prunable_layers


def test_message_form_matches_scikit_learn():
    with pytest.raises(ValueError) as e:
        check_float(1.5, "amount", "magnitude", 0, 1, closed="left")
    assert str(e.value) == ("The 'amount' parameter of magnitude must be a float in the range "
                            "[0, 1). Got 1.5 instead.")


@pytest.mark.parametrize("value", [math.nan, -0.1, 1.0])
def test_float_out_of_range_is_value_error(value):
    with pytest.raises(ValueError, match="'amount' parameter of f must be a float in the range"):
        check_float(value, "amount", "f", 0, 1, closed="left")


@pytest.mark.parametrize("value", ["0.5", None, True, [0.5]])
def test_float_wrong_type_is_type_error(value):
    with pytest.raises(TypeError, match="'amount' parameter of f"):
        check_float(value, "amount", "f", 0, 1)


def test_float_accepts_ints_and_scalar_tensors():
    assert check_float(1, "x", "f", 0, 2) == 1.0
    assert check_float(torch.tensor(0.25), "x", "f", 0, 1) == 0.25
    assert check_float(0, "x", "f", 0, 1, closed="left") == 0.0


def test_int_and_choice_and_tensor():
    assert check_int(3, "bits", "f", 1, 16) == 3
    with pytest.raises(TypeError):
        check_int(2.5, "bits", "f", 1, 16)
    with pytest.raises(ValueError, match=r"range \[1, 16\]. Got 33"):
        check_int(33, "bits", "f", 1, 16)
    with pytest.raises(ValueError, match="one of 'layer', 'global'"):
        check_choice("local", "scope", "f", ("layer", "global"))
    with pytest.raises(TypeError):
        check_choice(3, "scope", "f", ("layer", "global"))
    with pytest.raises(TypeError, match="torch.Tensor. Got 'list'"):
        check_tensor([1.0], "w", "f")
    with pytest.raises(TypeError, match="floating-point"):
        check_tensor(torch.ones(2, dtype=torch.int64), "w", "f")


def test_model_without_prunable_layers_is_value_error():
    with pytest.raises(ValueError, match="at least one Linear or Conv layer"):
        prunable_layers(nn.Sequential(nn.ReLU()), "model", "f")
    with pytest.raises(TypeError):
        prunable_layers("model", "model", "f")
