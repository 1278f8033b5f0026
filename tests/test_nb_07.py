"""Notebook 07 under papermill with non-default parameters (smoke size), and a bad parameter."""
import papermill
import pytest

from conftest import outputs_text


@pytest.mark.notebook
def test_07_runs_with_other_parameters(run_notebook):
    nb = run_notebook("07", smoke=True, seed=1, amount_fc1=0.8, bits_fc1=3, bits_fc2=4,
                      index_bits=4, codebook_lr=1e-3)
    text = outputs_text(nb)
    assert "layer 1: 8 shared values" in text and "layer 3: 16 shared values" in text
    assert "Han et al. 2016, Table 2" in text and "bytes: dense 1,066,440" in text


@pytest.mark.notebook
def test_07_rejects_a_bad_parameter_value_with_a_clear_message(run_notebook):
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_notebook("07", amount_fc1=1.0, smoke=True)
    assert e.value.ename == "ValueError"
    assert "The 'amount_fc1' parameter of 07_deep_compression must be a float in the range [0, 1)" in e.value.evalue
