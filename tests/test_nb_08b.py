"""Appendix 08b under papermill with non-default parameters (smoke size): the .pte lowered and
checked bit for bit, every method row; and a bad parameter."""
import executorch  # noqa: F401  (pinned in pyproject.toml: missing, this file must fail here, not skip)
import onnxruntime  # noqa: F401
import papermill
import pytest

from conftest import outputs_text


@pytest.mark.notebook
def test_08b_lowers_to_executorch_and_compares_every_method(run_notebook):
    nb = run_notebook("08b", lower=True, method="histogram", bias_correction=True, adaround=True, smoke=True,
                      calibration=4, seed=1)
    text = outputs_text(nb)
    assert "method histogram, calibration 4 images, 8 scored images" in text
    assert "xnnpack.emulate and the .pte program: bitwise equal logits on 8 images: True" in text
    assert "reference graph and the .pte program: same top-1 on" in text
    for row in ("XNNPACK as shipped, minmax", "ReLU6-aware, minmax", "ReLU6-aware, histogram",
                "ReLU6-aware, histogram, bias correction", "ReLU6-aware, histogram, AdaRound",
                "U8S8 (uint8 × int8)", "U8U8 (uint8 × uint8)", "ONNX Runtime calibration percentile"):
        assert row in text, row


@pytest.mark.notebook
def test_08b_rejects_a_bad_parameter_value_with_a_clear_message(run_notebook):
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_notebook("08b", method="kl", smoke=True)
    assert e.value.ename == "ValueError"
    assert "The 'method' parameter of 08b_xnnpack_and_onnxruntime_int8 must be one of 'minmax', 'percentile', 'histogram'" in e.value.evalue
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_notebook("08b", lower="yes", smoke=True)
    assert "The 'lower' parameter of 08b_xnnpack_and_onnxruntime_int8 must be a bool" in e.value.evalue
