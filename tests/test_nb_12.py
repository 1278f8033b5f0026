"""Notebook 12 under papermill with non-default parameters (smoke size), and a bad parameter."""
import papermill
import pytest

from conftest import outputs_text


@pytest.mark.notebook
def test_12_runs_with_other_parameters(run_notebook):
    nb = run_notebook("12", smoke=True, seed=1, sparsity=0.3, criterion="sparsegpt")
    text = outputs_text(nb)
    assert "✓ nm_mask: all" in text and "seeds [1]" in text
    assert "SparseGPT 50 % + 4-bit" in text and "masks kept" in text and "dense (control)" in text
    assert "MiniLM STS-B Spearman" in text and "CUDA" in text
    assert "sparsegpt at 30% unstructured" in text


@pytest.mark.notebook
def test_12_rejects_a_bad_parameter_value_with_a_clear_message(run_notebook):
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_notebook("12", criterion="obs", smoke=True)
    assert e.value.ename == "ValueError"
    assert "The 'criterion' parameter of 12_llm_sparsity must be one of" in e.value.evalue
