"""Notebook 05 under papermill with non-default parameters (smoke size), and a bad parameter."""
import papermill
import pytest

from conftest import outputs_text


@pytest.mark.notebook
def test_05_runs_with_other_parameters(run_notebook):
    nb = run_notebook("05", smoke=True, seed=1, hidden=16, T=3.0, alpha=0.7, max_shift=1,
                      sweep_T="2", sweep_alpha="0.3")
    text = outputs_text(nb)
    assert "student: 12,730 parameters" in text
    assert "distillation closes" in text and "T = 3, α = 0.7: soft targets" in text


@pytest.mark.notebook
def test_05_rejects_a_bad_parameter_value_with_a_clear_message(run_notebook):
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_notebook("05", alpha=1.5, smoke=True)
    assert e.value.ename == "ValueError"
    assert "The 'alpha' parameter of 05_knowledge_distillation must be a float in the range [0, 1]" in e.value.evalue
