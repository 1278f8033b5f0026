"""nbval really compares outputs: a tampered stored output fails, the honest one passes.

Run on a scratch copy of a small notebook, with the same sanitize file as `make test`.
"""
import subprocess
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent


def nbval(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval",
                           "--nbval-sanitize-with", str(ROOT / "tests" / "nbval_sanitize.cfg"),
                           str(path)], capture_output=True, text=True, cwd=path.parent, timeout=300)


def test_nbval_fails_when_a_checked_output_changes(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import torch\nfrom labkit import prune, sparsity\n"
        "W = torch.tensor([[1., 2, 0, 3], [4, 0, 5, 6], [7, 8, 0, 9]])\n"
        "print(f'rho {sparsity.density(W):.3f} -> {sparsity.density(prune.threshold(W, 2.0)):.3f}')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, kernel_name="python3").execute()
    assert nb.cells[0].outputs[0]["text"] == "rho 0.750 -> 0.667\n"
    honest, tampered = tmp_path / "honest.ipynb", tmp_path / "tampered.ipynb"
    nbformat.write(nb, honest)
    nb.cells[0].outputs[0]["text"] = "rho 0.750 -> 0.750\n"          # what seed 001 would print
    nbformat.write(nb, tampered)
    ok, bad = nbval(honest), nbval(tampered)
    assert ok.returncode == 0, ok.stdout
    assert bad.returncode == 1 and "1 failed" in bad.stdout, bad.stdout
