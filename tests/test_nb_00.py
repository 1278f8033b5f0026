import papermill
import pytest

from conftest import outputs_text


@pytest.mark.notebook
def test_00_runs_with_other_parameters(run_notebook):
    nb = run_notebook("00", seed=1, model_name="lenet5", epochs=2, lenet5_epochs=0, smoke=True)
    text = outputs_text(nb)
    assert "labkit == scikit-learn" in text and "lenet5: 61,706 parameters" in text


@pytest.mark.notebook
def test_00_rejects_a_bad_parameter_value_with_a_clear_message(run_notebook):
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_notebook("00", model_name="resnet50", smoke=True)     # seed 000's MobileNet('resnet50')
    assert e.value.ename == "ValueError"
    assert "The 'model_name' parameter of 00_data_and_baseline must be one of 'lenet300_100', 'lenet5'" in e.value.evalue
