"""Notebook 04 under papermill with non-default parameters (smoke size), and a bad parameter."""
import papermill
import pytest

from conftest import outputs_text


@pytest.mark.notebook
def test_04_runs_with_other_parameters(run_notebook):
    nb = run_notebook("04", smoke=True, seed=1, bits=3, scheme="affine", granularity="tensor",
                      calibration="mse", budget_bits=4.0)
    text = outputs_text(nb)
    assert "12 (bits, scheme) pairs: scale, zero point and x̂ identical to torch's" in text
    assert "QAT W3A8" in text and "toy: greedy [4, 4]" in text


@pytest.mark.notebook
def test_04_rejects_a_bad_parameter_value_with_a_clear_message(run_notebook):
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_notebook("04", calibration="kl", smoke=True)
    assert e.value.ename == "ValueError"
    assert ("The 'calibration' parameter of 04_quantization must be one of 'minmax', "
            "'percentile', 'mse'") in e.value.evalue
