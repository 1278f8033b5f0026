"""labkit/__init__.py: lazy submodules, listed by dir() so that Jupyter's tab completion shows them."""
import importlib.util
import sys

import labkit


def test_dir_lists_every_public_submodule():
    names = dir(labkit)
    for name in ("prune", "share", "quantize", "check", "sweep", "models", "cli"):
        assert name in names
    assert "__version__" in names
    assert all(importlib.util.find_spec(f"labkit.{n}") for n in names if not n.startswith("_"))
    assert names == sorted(names)


def test_dir_finds_subpackages_from_the_package_folder(tmp_path, monkeypatch):
    name = "zz_subpackage_for_test"                  # e.g. labkit.deploy or labkit.workbook later
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / "_private.py").write_text("")
    monkeypatch.setattr(labkit, "__path__", [*labkit.__path__, str(tmp_path)])
    try:
        assert name in dir(labkit) and "_private" not in dir(labkit)
        assert getattr(labkit, name).__name__ == f"labkit.{name}"
    finally:
        sys.modules.pop(f"labkit.{name}", None)
        labkit.__dict__.pop(name, None)
