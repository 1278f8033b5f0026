import papermill
import pytest

from conftest import outputs_text


@pytest.mark.notebook
def test_02_runs_with_other_parameters(run_notebook):
    nb = run_notebook("02", smoke=True, seed=1, amount=0.8, criterion="taylor", schedule="linear", target=0.8)
    text = outputs_text(nb)
    assert "taylor, amount 0.80: sparsity 0.800" in text                   # the widget's static view
    assert "the seed's update flips" in text and "loaded sparsity" in text


@pytest.mark.notebook
def test_02_rejects_a_bad_criterion(run_notebook):
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_notebook("02", criterion="hessian", smoke=True)
    assert e.value.ename == "ValueError"
    assert "The 'criterion' parameter of 02_pruning_strategies must be one of 'magnitude', 'gradient', 'taylor'" in e.value.evalue
