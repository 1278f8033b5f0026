"""The reference numeric environment: defined once, recorded in every committed notebook, detected.

Where a machine does not reproduce it, nbval compares only the cells tagged nbval-check-output
(conftest.py switches nbval to its lax mode and says so in one line).
"""
import platform
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from labkit.workbook import numerics

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
X86_AVX2 = platform.machine() in ("x86_64", "AMD64") and " avx2" in Path("/proc/cpuinfo").read_text() \
    if Path("/proc/cpuinfo").exists() else False


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem.split("_")[0] for p in NOTEBOOKS])
def test_every_committed_notebook_was_executed_in_the_reference_environment(path):
    recorded = nbformat.read(path, as_version=4).metadata.get("labkit", {}).get("numerics")
    assert recorded is not None, f"{path.name} records no numeric environment: execute it with tools/nb.py"
    assert not numerics.differences(recorded), (
        f"{path.name} was executed in another numeric environment: {numerics.differences(recorded)}")


def test_environments_by_name():
    assert numerics.environment("reference") == numerics.REFERENCE
    assert numerics.REFERENCE["ATEN_CPU_CAPABILITY"] == "avx2" and numerics.REFERENCE["OMP_NUM_THREADS"] == "1"
    assert numerics.environment("native") == {}
    assert numerics.environment("perturbed")["ATEN_CPU_CAPABILITY"] == "default"
    with pytest.raises(ValueError, match=r"The 'name' parameter of environment must be one of "
                                         r"'reference', 'perturbed', 'native'. Got 'fast' instead."):
        numerics.environment("fast")


def test_differences_and_summary_by_hand():
    found = dict(numerics.EXPECTED, isa="AVX512", threads=2)
    assert numerics.differences(found) == ["isa 'AVX512' (reference 'AVX2')", "threads 2 (reference 1)"]
    assert numerics.differences(dict(numerics.EXPECTED)) == []
    assert numerics.summary(numerics.EXPECTED) == "torch 2.13.0+cpu, x86_64, AVX2, 1 thread"


@pytest.mark.skipif(not X86_AVX2, reason="the reference pins select AVX2 kernels: x86-64 with AVX2 only")
def test_the_pins_select_avx2_and_one_thread_and_the_probe_sees_kernels_and_threads():
    ref = numerics.describe_in(numerics.REFERENCE)
    assert (ref["isa"], ref["threads"]) == ("AVX2", 1), ref
    assert numerics.describe_in(numerics.REFERENCE)["probe"] == ref["probe"]        # deterministic
    no_simd = numerics.describe_in({**numerics.REFERENCE, "ATEN_CPU_CAPABILITY": "default"})
    two = numerics.describe_in({**numerics.REFERENCE, "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"})
    assert no_simd["isa"] == "DEFAULT" and no_simd["probe"] != ref["probe"]
    assert two["threads"] == 2 and two["probe"] != ref["probe"]


def scratch_notebook(path: Path) -> Path:
    """Two printing cells, executed; the first tagged machine-independent."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print('exact 0.75')"), nbformat.v4.new_code_cell("print('trained 0.972')")]
    nb.cells[0].metadata["tags"] = ["nbval-check-output"]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, kernel_name="python3").execute()
    nbformat.write(nb, path)
    return path


def tamper(path: Path, cell: int, text: str) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.cells[cell].outputs[0]["text"] = text
    nbformat.write(nb, path)


def nbval_with_conftest(path: Path, numerics_name: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "LABKIT_NUMERICS": numerics_name, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest",
                           "--nbval", str(path)], capture_output=True, text=True, cwd=path.parent,
                          env=env, timeout=300)


def test_elsewhere_only_tagged_cells_are_compared_and_the_run_says_so(tmp_path):
    path = scratch_notebook(tmp_path / "scratch.ipynb")
    tamper(path, 1, "trained 0.971\n")                       # as another CPU's kernels would print
    done = nbval_with_conftest(path, "perturbed")
    assert done.returncode == 0, done.stdout
    assert "nbval: NOT the reference numeric environment (" in done.stdout, done.stdout
    assert "machine-independent cells compared" in done.stdout, done.stdout
    tamper(path, 0, "exact 0.667\n")                         # a machine-independent output changed
    done = nbval_with_conftest(path, "perturbed")
    assert done.returncode == 1 and "1 failed" in done.stdout, done.stdout


@pytest.mark.skipif(not X86_AVX2, reason="the reference environment is reproduced on x86-64 with AVX2 only")
def test_in_the_reference_environment_every_cell_is_compared(tmp_path):
    path = scratch_notebook(tmp_path / "scratch.ipynb")
    done = nbval_with_conftest(path, "reference")
    assert done.returncode == 0 and "nbval: reference numeric environment reproduced (torch " in done.stdout, done.stdout
    tamper(path, 1, "trained 0.971\n")
    done = nbval_with_conftest(path, "reference")
    assert done.returncode == 1 and "1 failed" in done.stdout, done.stdout
