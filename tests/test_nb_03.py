import papermill
import pytest

from conftest import outputs_text


@pytest.mark.notebook
def test_03_runs_with_other_parameters(run_notebook):
    nb = run_notebook("03", smoke=True, seed=1, amount=0.25, max_amount=0.75, n_amounts=3, batch=128)
    text = outputs_text(nb)
    assert "kept at amount 0.25" in text and "same outputs as the zeroed network" in text


@pytest.mark.notebook
def test_03_rejects_amount_one(run_notebook):
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_notebook("03", amount=1.0, smoke=True)
    assert e.value.ename == "ValueError"
    assert "The 'amount' parameter of 03_structured_pruning must be a float in the range [0, 1)" in e.value.evalue
