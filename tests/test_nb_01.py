import papermill
import pytest

from conftest import outputs_text
from labkit import cli


@pytest.mark.notebook
def test_01_runs_with_other_parameters(run_notebook):
    nb = run_notebook("01", tau=0.08, tau_max=0.1, n_taus=3, seed=2, smoke=True)
    text = outputs_text(nb)
    assert "non-zeros: 9 -> 8 of 12" in text and "tau = 0.08: sparsity" in text


@pytest.mark.notebook
def test_01_rejects_a_negative_tau(run_notebook):
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_notebook("01", tau=-0.1, smoke=True)
    assert e.value.ename == "ValueError"
    assert "The 'tau' parameter of 01_sparsity_and_threshold_pruning must be a float in the range [0, inf)" in e.value.evalue


def test_01_unknown_or_ill_typed_parameter_is_refused_before_running():
    path = cli.find_notebook("01")
    with pytest.raises(cli.UsageError, match="no parameter 'tua'. Valid names: seed, tau, tau_max"):
        cli.check_parameters(path, [("tua", "0.05")])
    with pytest.raises(cli.UsageError, match="The 'tau' parameter of 01_sparsity_and_threshold_pruning must be a float"):
        cli.check_parameters(path, [("tau", "high")])
