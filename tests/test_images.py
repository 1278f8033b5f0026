"""labkit.images: labelled folders, calibration images, accuracy and agreement batch by batch."""
import numpy as np
import pytest
import torch
from PIL import Image

from labkit.deploy import images


def _folder(tmp_path, layout):
    """root/<class>/<i>.png, one constant grey image per level in layout[class]; returns root."""
    for folder, greys in layout.items():
        (tmp_path / folder).mkdir()
        for i, grey in enumerate(greys):
            Image.fromarray(np.full((40, 50, 3), grey, dtype=np.uint8)).save(tmp_path / folder / f"{i}.png")
    return tmp_path


def test_image_files_labels_from_wnids_and_indices(tmp_path):
    root = _folder(tmp_path, {"n07920052": [0, 10], "285": [0]})
    (root / "285" / "notes.txt").write_text("not an image")              # skipped
    files = images.image_files(root)
    assert [(f.parent.name, f.name, y) for f, y in files] == [
        ("285", "0.png", 285), ("n07920052", "0.png", 967), ("n07920052", "1.png", 967)]   # espresso = 967
    assert len(images.image_files(root, limit=1)) == 2
    X, y = images.image_folder(root)
    assert X.shape == (3, 3, 224, 224) and y.tolist() == [285, 967, 967]
    (root / "cats").mkdir()
    with pytest.raises(ValueError, match="'root' parameter of image_files"):
        images.image_files(root)
    with pytest.raises(ValueError, match="'root' parameter of image_files"):
        images.image_files(tmp_path / "missing")
    with pytest.raises(TypeError, match="'root' parameter of image_files"):
        images.image_files(3)


def test_sample_files_seeded_without_replacement(tmp_path):
    root = _folder(tmp_path, {"a": [0] * 5, "b": [0] * 5})
    one, again = images.sample_files(root, 4, seed=1), images.sample_files(root, 4, seed=1)
    assert one == again and len(set(one)) == 4 and one == sorted(one)
    assert len({tuple(images.sample_files(root, 4, seed=s)) for s in range(5)}) > 1   # the seed matters
    assert sorted(images.sample_files(root, 10)) == sorted(root.rglob("*.png"))
    with pytest.raises(ValueError, match=r"'n' parameter of sample_files must be an int in the range \[1, 10\]"):
        images.sample_files(root, 11)


def _logits(best: torch.Tensor) -> torch.Tensor:
    """(N, 1000) logits ranking class best[i] first, then 0, 1, 2, ... (no ties)."""
    z = -torch.arange(1000.0).repeat(len(best), 1)
    z[torch.arange(len(best)), best] = 1.0
    return z


def test_evaluate_by_hand(tmp_path):
    """Labels 1, 1, 2, 2, 999 with grey levels 0, 0, 0, 200, 0. 'ref' always answers class 1:
    top-1 2/5, top-5 4/5 (its top-5 is {1, 0, 2, 3, 4}: 999 is missed). 'bright' answers 2 on the
    grey-200 image and 1 elsewhere: top-1 3/5, top-5 4/5, agreement with 'ref' 4/5, +20 points."""
    root = _folder(tmp_path, {"1": [0, 0], "2": [0, 200], "999": [0]})
    files = images.image_files(root)

    def ref(X):
        return _logits(torch.ones(len(X), dtype=torch.long))

    def bright(X):
        return _logits(1 + (X.mean((1, 2, 3)) > 0).long())        # grey 200 normalizes to > 0, grey 0 < 0

    table = images.compare({"ref": ref, "bright": bright}, files, batch_size=2)
    assert table.loc["ref"].tolist() == pytest.approx([5, 0.4, 0.8, 1.0, 0.0])
    assert table.loc["bright"].tolist() == pytest.approx([5, 0.6, 0.8, 0.8, 20.0])
    assert list(table.columns) == ["images", "top1", "top5", "agreement", "delta_top1"]
    with pytest.raises(TypeError, match="'models' parameter of compare"):
        images.compare({"x": 3}, files)
    with pytest.raises(ValueError, match="'files' parameter of compare"):
        images.compare({"ref": ref}, [])
    with pytest.raises(ValueError, match="'batch_size' parameter of compare"):
        images.compare({"ref": ref}, files, batch_size=0)


def test_calibration_images_are_other_photos_and_seeded():
    import skimage  # noqa: F401  (pinned in pyproject.toml: missing, it must fail here, not skip)
    cal = images.calibration_photos()
    scored = images.photos()
    assert len(cal) == 12 and not set(cal) & set(scored)
    shapes = {a.shape for a in scored.values()}
    assert not any(c.shape in shapes and any(np.array_equal(c, s) for s in scored.values()) for c in cal.values())
    a, b = images.calibration_images(14, seed=3), images.calibration_images(14, seed=3)
    assert a.shape == (14, 3, 224, 224) and torch.equal(a, b)
    assert not torch.equal(a[12:], images.calibration_images(14, seed=4)[12:])     # random views
    assert torch.equal(a[:12], images.calibration_images(12, seed=4))              # centre crops first


def test_images_re_exports_the_wilson_interval_of_stats():
    from labkit import stats

    assert images.wilson_interval is stats.wilson_interval


def test_load_images_checks_its_paths(tmp_path):
    root = _folder(tmp_path, {"0": [5]})
    assert images.load_images([root / "0" / "0.png"]).shape == (1, 3, 224, 224)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        images.load_images([root / "0" / "0.png", root / "missing.png"])
    with pytest.raises(ValueError, match="'paths' parameter of load_images must be a non-empty list"):
        images.load_images([])                                  # was torch.stack's RuntimeError
    with pytest.raises(TypeError, match="'paths' parameter of load_images must be a list of image paths"):
        images.load_images(str(root / "0" / "0.png"))           # one path is not a list of them
