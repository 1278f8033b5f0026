"""Notebook 11 under papermill: one smoke run with other parameters and without STS-B (the shipped
sample and a visible message; the nbval run covers the STS-B subset), and a bad parameter."""
import papermill
import pytest

from conftest import outputs_text


@pytest.mark.notebook
def test_11_runs_with_other_parameters_and_without_sts_b(run_notebook, tmp_path):
    nb = run_notebook("11", smoke=True, seed=1, alpha=0.75, n_pairs=30,
                      sts_path=str(tmp_path / "no-such" / "sts-test.csv"))
    text = outputs_text(nb)
    assert "✓ smoothquant_fold: all" in text and "α chosen on calibration sentences" in text
    assert "STS-B not found" in text and "running on labkit's shipped 14-pair sample" in text
    assert "STS-B: 14 of 14 pairs (the shipped sample)" in text and "notebook run time" in text
    assert "α = 0.75: held-out embedding" in text and "MatMulInteger" in text


@pytest.mark.notebook
def test_11_rejects_a_bad_parameter_value_with_a_clear_message(run_notebook):
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_notebook("11", n_pairs=5, smoke=True)
    assert e.value.ename == "ValueError"
    assert "The 'n_pairs' parameter of 11_activation_quantization must be 0 (all) or an int in [10, 1379]" in e.value.evalue
