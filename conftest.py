"""Test-wide settings (tests/ and the nbval run of notebooks/). Kernels started by nbval and papermill inherit this environment.

LABKIT_HEADLESS=1: widgets print their default view instead of waiting for a slider.
The numeric environment is the reference one (labkit.workbook.numerics: ATen/MKL/oneDNN held to
AVX2, one thread per kernel; two xdist workers then use the two cores), or the one LABKIT_NUMERICS
names (`LABKIT_NUMERICS=perturbed make test`). Where the kernels do not reproduce the reference
(another ISA, ARM, another thread count), nbval compares only the cells tagged
`nbval-check-output` (machine-independent) and says so in one line; every cell still executes, so
every asserted claim still runs.
"""
import json
import os

from labkit.workbook import numerics   # stdlib only: torch is not imported before the pins are set

NUMERICS = os.environ.get("LABKIT_NUMERICS", "reference")
os.environ.update({"LABKIT_HEADLESS": "1", **numerics.environment(NUMERICS)})

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

    from labkit.workbook import runner

    def run(key: str, **parameters):
        path = runner.find_notebook(key, NOTEBOOKS)
        spec = runner.parameters_of(path)
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


STATUS = "LABKIT_REFERENCE_STATUS"     # computed once by the controller, read by the xdist workers


def pytest_configure(config):
    if not (config.option.nbval or config.option.nbval_lax):
        return
    if STATUS not in os.environ:
        found = numerics.describe_in({})
        os.environ[STATUS] = json.dumps({"found": found, "why": "; ".join(numerics.differences(found))})
    if json.loads(os.environ[STATUS])["why"]:
        config.option.nbval_lax = True      # compare only the cells tagged nbval-check-output


def compared_cells(nb, reproduced: bool) -> tuple[int, int]:
    """(compared, not compared) code cells of a notebook under nbval, by its markers and tags."""
    compared = skipped = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.get("tags", [])
        ignored = "NBVAL_IGNORE_OUTPUT" in cell.source or "nbval-ignore-output" in tags
        check = not ignored and (reproduced or "nbval-check-output" in tags)
        compared += check
        skipped += not check
    return compared, skipped


def notebooks_in_run(config) -> list:
    """The .ipynb files named by the command line's paths (a folder: every notebook in it)."""
    found = set()
    for arg in config.args:
        path = Path(str(arg).split("::")[0])
        if path.is_dir():
            found.update(path.rglob("*.ipynb"))
        elif path.suffix == ".ipynb":
            found.add(path)
    return sorted(p for p in found if ".ipynb_checkpoints" not in p.parts)


def pytest_terminal_summary(terminalreporter, config):
    if not (config.option.nbval or config.option.nbval_lax) or STATUS not in os.environ:
        return
    import nbformat

    status = json.loads(os.environ[STATUS])
    reproduced = not status["why"]
    counts = {p.stem[:3].rstrip("_"): compared_cells(nbformat.read(p, as_version=4), reproduced)
              for p in notebooks_in_run(config)}
    compared = sum(c for c, _ in counts.values())
    if reproduced:
        ignored = sum(s for _, s in counts.values())
        line = (f"nbval: reference numeric environment reproduced ({numerics.summary(status['found'])}): "
                f"{compared} cells compared; {ignored} marked NBVAL_IGNORE_OUTPUT (timings) not compared")
    else:
        per = ", ".join(f"{k}: {s}" for k, (_, s) in counts.items())
        line = (f"nbval: NOT the reference numeric environment ({status['why']}): {compared} "
                f"machine-independent cells compared; not compared, as their floating-point outputs "
                f"depend on the CPU's kernels: {per}; every cell executed, every asserted claim checked")
    terminalreporter.write_line(line)
