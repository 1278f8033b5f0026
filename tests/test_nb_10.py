"""Notebook 10 under papermill with non-default parameters (smoke size), and a bad parameter."""
import papermill
import pytest

from conftest import outputs_text


@pytest.mark.notebook
def test_10_runs_with_other_parameters(run_notebook):
    nb = run_notebook("10", smoke=True, seed=1, bits=4, group_size=32)
    text = outputs_text(nb)
    assert "✓ groupwise: all" in text and "✓ gptq_column: all" in text
    assert "g = 32, symmetric" in text and "seeds [1]" in text
    assert "kernel vs labkit emulation" in text


@pytest.mark.notebook
def test_10_rejects_a_bad_parameter_value_with_a_clear_message(run_notebook):
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_notebook("10", group_size=48, smoke=True)
    assert e.value.ename == "ValueError"
    assert "The 'group_size' parameter of 10_llm_weight_quantization must be one of 32, 64, 128" in e.value.evalue
