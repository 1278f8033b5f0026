"""Notebook 06 under papermill with non-default parameters (smoke size), and a bad parameter."""
import papermill
import pytest

from conftest import outputs_text


@pytest.mark.notebook
def test_06_runs_with_other_parameters(run_notebook):
    nb = run_notebook("06", smoke=True, seed=1, ranks="3,24", energy=0.95, finetune_epochs=2)
    text = outputs_text(nb)
    assert "r =   8: ‖W − W_r‖_F" in text
    assert "factorized layers" in text and "fine-tuning gain" in text
    assert "LeNet-5 (untrained) at 0.95 energy" in text


@pytest.mark.notebook
def test_06_rejects_a_bad_parameter_value_with_a_clear_message(run_notebook):
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_notebook("06", ranks="4,x", smoke=True)
    assert e.value.ename == "ValueError"
    assert "The 'ranks' parameter of 06_low_rank must be a str of comma-separated ints" in e.value.evalue
