"""A wheel of labkit is whole: built and installed into a folder of its own (not the checkout,
not an editable install), it imports, carries the subpackages labkit.deploy and labkit.workbook,
reads its package data (the ImageNet class names) with importlib.resources, and its `labkit`
command is labkit.workbook.cli:main."""
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHECK = r"""
import sys
from pathlib import Path
target = Path(sys.argv[1]).resolve()
import labkit, labkit.deploy, labkit.mobilenet
from labkit.deploy import mobilenet
for mod in (labkit, labkit.deploy, mobilenet):
    assert target in Path(mod.__file__).resolve().parents, (mod.__name__, mod.__file__)
assert labkit.mobilenet is mobilenet
names = mobilenet.class_names()
assert len(names) == 1000 and names[0] == "tench" and mobilenet.wnids()[0] == "n01440764", names[:3]
assert target in Path(str(mobilenet.CLASSES_FILE)).resolve().parents
import labkit.workbook.cli
from importlib.metadata import distribution
assert target in Path(labkit.workbook.cli.__file__).resolve().parents
(script,) = [e for e in distribution("labkit").entry_points if e.name == "labkit"]
assert script.value == "labkit.workbook.cli:main" and script.load() is labkit.workbook.cli.main, script
print("ok", labkit.__file__)
"""


def test_wheel_installs_with_its_subpackages_and_package_data(tmp_path):
    # build from a copy of what a source distribution holds, so that setuptools' build/ and
    # *.egg-info/ land in tmp_path, not in the checkout
    src, wheels, target = tmp_path / "src", tmp_path / "wheels", tmp_path / "site"
    shutil.copytree(ROOT / "labkit", src / "labkit", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    # --no-build-isolation: build with the setuptools installed here, no index needed
    subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
                   check=True, cwd=tmp_path, capture_output=True, timeout=120)
    (wheel,) = wheels.glob("labkit-*.whl")
    subprocess.run(pip + ["install", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, cwd=tmp_path, capture_output=True, timeout=120)
    # -S: no site module, so no .pth file runs — the development venv's editable install of the
    # checkout (a finder mapping labkit.* to the source tree) must not serve any module. The
    # venv's site-packages stay on the path, after the wheel's folder, for torch and the rest.
    site = [sysconfig.get_paths()[k] for k in ("purelib", "platlib")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), *dict.fromkeys(site)])}
    out = subprocess.run([sys.executable, "-S", "-c", CHECK, str(target)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok"), out.stdout
