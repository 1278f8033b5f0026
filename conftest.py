"""Test-wide settings (tests/ and the nbval run of notebooks/). Kernels started by nbval and papermill inherit this environment.

LABKIT_HEADLESS=1: widgets print their default view instead of waiting for a slider.
OMP/MKL_NUM_THREADS=1: the notebooks' stored outputs were computed with one thread
(tools/nb.py), and two xdist workers then use the two cores without oversubscription.
"""
import os

os.environ.update({"LABKIT_HEADLESS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})

from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"


@pytest.fixture
def run_notebook(tmp_path):
    """run_notebook("01", tau=0.1, smoke=True) → the executed notebook (papermill, notebooks/ as cwd).

    Parameter names and types are checked against the notebook's parameters cell first, as
    `labkit run` does; the source notebook is never written.
    """
    import nbformat
    import papermill

    from labkit import cli

    def run(key: str, **parameters):
        path = cli.find_notebook(key, NOTEBOOKS)
        spec = cli.parameters_of(path)
        unknown = set(parameters) - set(spec)
        assert not unknown, f"{path.stem} has no parameters {unknown}"
        out = tmp_path / f"{path.stem}.ipynb"
        papermill.execute_notebook(str(path), str(out), parameters=parameters, cwd=str(NOTEBOOKS),
                                   kernel_name="python3", progress_bar=False)
        return nbformat.read(out, as_version=4)

    return run


def outputs_text(nb) -> str:
    """All text the notebook printed or displayed, joined (for asserting on a report)."""
    parts = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            parts.append(o.get("text", "") or o.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def write_notebook(path, parameters: str, body: str):
    """A two-cell notebook: `parameters` (tagged) and `body`; for tests of the runners."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path
