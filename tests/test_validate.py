import math

import pytest
import torch
from torch import nn

import functools

from labkit.validate import (check_bits, check_bool, check_choice, check_finite, check_float, check_int,
                             check_path, check_tensor, check_xy, message, per_layer, prunable_layers)


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


def test_message_shows_the_value_with_repr():
    assert message("n", "f", "an int", 1) == "The 'n' parameter of f must be an int. Got 1 instead."
    assert message("n", "f", "an int", "1") == "The 'n' parameter of f must be an int. Got '1' instead."


@pytest.mark.parametrize("value", [1, 8, 32])
def test_bits_in_range(value):
    assert check_bits(value, "bits", "f") == value


def test_bits_out_of_range_or_not_an_int():
    with pytest.raises(ValueError, match=r"^The 'bits' parameter of f must be an int in the range \[1, 32\]\. "
                                         r"Got 33 instead\.$"):
        check_bits(33, "bits", "f")
    with pytest.raises(ValueError, match=r"range \[2, 16\]. Got 1 instead"):
        check_bits(1, "a_bits", "f", low=2, high=16)
    with pytest.raises(ValueError):
        check_bits(0, "bits", "f")
    for bad in (8.0, "8", True, None):
        with pytest.raises(TypeError, match="'bits' parameter of f must be an int"):
            check_bits(bad, "bits", "f")


def test_bool():
    assert check_bool(True, "download", "f") is True
    assert check_bool(False, "download", "f") is False
    for bad, shown in ((1, "1"), ("True", "'True'"), (None, "None")):
        with pytest.raises(TypeError) as e:
            check_bool(bad, "download", "f")
        assert str(e.value) == f"The 'download' parameter of f must be a bool. Got {shown} instead."


FRACTION = functools.partial(check_float, low=0, high=1, closed="left")


def test_per_layer_one_value_for_every_layer():
    assert per_layer(0.5, ["a", "b"], FRACTION, "amount", "f") == {"a": 0.5, "b": 0.5}
    assert per_layer(0, ("a",), FRACTION, "amount", "f") == {"a": 0.0}
    with pytest.raises(ValueError, match=r"'amount' parameter of f must be a float in the range \[0, 1\)"):
        per_layer(1.5, ["a", "b"], FRACTION, "amount", "f")


def test_per_layer_dict_keeps_only_the_layers_given():
    got = per_layer({"b": 0.25}, ["a", "b", "c"], FRACTION, "amount", "f")
    assert got == {"b": 0.25}                              # a, c: missing → left as they are
    assert per_layer({}, ["a"], FRACTION, "amount", "f") == {}
    got = per_layer({"c": 0.1, "a": 0.2}, ["a", "b", "c"], FRACTION, "amount", "f")
    assert list(got) == ["a", "c"]                         # in the layers' order


def test_per_layer_checks_every_value_of_a_dict():
    with pytest.raises(ValueError, match=r"range \[0, 1\)\. Got 1\.0 instead"):
        per_layer({"a": 0.5, "b": 1.0}, ["a", "b"], FRACTION, "amount", "f")
    with pytest.raises(TypeError, match="'bits' parameter of g must be an int"):
        per_layer({"a": 2.5}, ["a"], functools.partial(check_bits, high=16), "bits", "g")


def test_per_layer_refuses_an_unknown_layer_and_lists_the_valid_names():
    with pytest.raises(ValueError) as e:
        per_layer({"a": 0.5, "zz": 0.1, "fc9": 0.2}, ["a", "b"], FRACTION, "amount", "f")
    assert str(e.value) == ("The 'amount' parameter of f must be one value or a dict keyed by layer "
                            "names among 'a', 'b'. Got ['fc9', 'zz'] instead.")


# ---------------------------------------------------------------- per_layer in every labkit function
def _five():
    from labkit import deep_compression, lowrank, prune, ptq, structured
    return {   # (call with a dict, the names it accepts)
        "prune.magnitude_": (lambda m, d: prune.magnitude_(m, d), "magnitude_", "amount", 0.5),
        "prune.prune_by_scores_": (lambda m, d: prune.prune_by_scores_(
            m, {n: l.weight.abs() for n, l in prunable_layers(m, "m", "t")}, d), "prune_by_scores_", "amount", 0.5),
        "structured.prune_filters": (lambda m, d: structured.prune_filters(m, d), "prune_filters", "amount", 0.5),
        "ptq.quantize_weights": (lambda m, d: ptq.quantize_weights(m, d), "quantize_weights", "bits", 4),
        "lowrank.factorize": (lambda m, d: lowrank.factorize(m, rank=d), "factorize", "rank", 2),
        "deep_compression.share_pruned_": (lambda m, d: deep_compression.share_pruned_(m, d),
                                           "share_pruned_", "bits", 2),
    }


@pytest.mark.parametrize("func", list(_five()))
def test_every_per_layer_parameter_refuses_an_unknown_layer_listing_the_valid_names(func):
    call, name, param, value = _five()[func]
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    valid = "'0', '2'" if func == "structured.prune_filters" else "'0', '2', '4'"   # never the output layer
    with pytest.raises(ValueError) as e:
        call(model, {"0": value, "fc9": value})
    assert str(e.value) == (f"The '{param}' parameter of {name} must be one value or a dict keyed by "
                            f"layer names among {valid}. Got ['fc9'] instead.")


@pytest.mark.parametrize("func", list(_five()))
def test_every_per_layer_parameter_leaves_a_missing_layer_as_it_is(func):
    call, _, _, value = _five()[func]
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    before = model[2].weight.detach().clone()
    out = call(model, {"0": value})
    out = out if isinstance(out, nn.Module) else model        # share_pruned_ returns the codebooks
    if func == "structured.prune_filters":                    # "2" keeps its filters (its inputs
        assert out[2].out_features == 4                       # follow the filters "0" lost)
    else:
        assert torch.equal(out[2].weight, before)             # "2" is not in the dict: unchanged
    if func == "deep_compression.share_pruned_":
        assert "2" not in call(model, {"0": value})


# ---------------------------------------------------------------- check_finite, check_path, the labels
def test_finite_refuses_nan_and_inf_and_says_how_many():
    x = torch.tensor([1.0, 2.0])
    assert check_finite(x, "x", "observe") is x
    assert check_finite(torch.empty(0), "x", "f").numel() == 0       # nothing to poison
    with pytest.raises(ValueError) as e:
        check_finite(torch.tensor([math.nan, 1.0, math.inf]), "x", "observe")
    assert str(e.value) == ("The 'x' parameter of observe must be a tensor of finite values (no NaN or "
                            "Inf). Got '2 NaN/Inf of 3 values' instead.")
    with pytest.raises(TypeError, match="'x' parameter of f must be a torch.Tensor"):
        check_finite([1.0], "x", "f")


def test_path_type_and_existence(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"1")
    assert check_path(str(f), "path", "sha256") == f
    assert check_path(tmp_path / "new", "dest", "download", exists=False) == tmp_path / "new"
    with pytest.raises(FileNotFoundError, match="nope"):
        check_path(tmp_path / "nope", "path", "sha256")
    for bad in (None, -1, 3.5, ["a"], ""):          # -1 would be a file descriptor to open()
        with pytest.raises(TypeError, match="'path' parameter of sha256 must be a path"):
            check_path(bad, "path", "sha256")


def test_checks_refuse_a_name_or_func_that_is_not_a_str():
    with pytest.raises(TypeError, match="^The 'name' parameter of check_float must be a str. Got 1 instead.$"):
        check_float(0.5, 1, "f")
    with pytest.raises(TypeError, match="'func' parameter of check_int must be a str"):
        check_int(3, "n", None)
    with pytest.raises(TypeError, match="'allowed' parameter of message must be a str"):
        message("n", "f", None, 1)


def test_choice_needs_a_collection_of_choices():
    with pytest.raises(TypeError, match="'choices' parameter of check_choice"):
        check_choice("a", "scope", "f", "abc")            # a str is not a tuple of choices
    with pytest.raises(ValueError, match="'choices' parameter of check_choice must be a non-empty"):
        check_choice("a", "scope", "f", ())
    assert check_choice(None, "x", "f", (None, "a")) is None


def test_per_layer_needs_names_and_a_callable_check():
    with pytest.raises(TypeError, match="'names' parameter of per_layer"):
        per_layer(0.5, "ab", FRACTION, "amount", "f")
    with pytest.raises(TypeError, match="'check' parameter of per_layer"):
        per_layer(0.5, ["a"], None, "amount", "f")


def test_xy_is_a_labelled_data_set():
    check_xy(torch.zeros(3, 2), torch.zeros(3, dtype=torch.int64), "fit")
    with pytest.raises(TypeError, match="^The 'X' parameter of fit must be a floating-point torch.Tensor"):
        check_xy(torch.zeros(3, dtype=torch.int64), torch.zeros(3, dtype=torch.int64), "fit")
    with pytest.raises(TypeError, match="'y_test' parameter of f must be an int64"):
        check_xy(torch.zeros(3), torch.zeros(3), "f", "X_test", "y_test")
    with pytest.raises(ValueError, match="'y' parameter of fit must be a non-empty tensor with as many rows as X"):
        check_xy(torch.zeros(0, 2), torch.zeros(0, dtype=torch.int64), "fit")
    with pytest.raises(TypeError, match="'func' parameter of check_xy must be a str"):
        check_xy(torch.zeros(1), torch.zeros(1, dtype=torch.int64), None)
