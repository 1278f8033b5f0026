"""Structural rules every committed notebook keeps (notebooks/README.md); nbval and the
tests/test_nb_*.py papermill runs execute them."""
import ast
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))


def code_cells(path):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem.split("_")[0] for p in NOTEBOOKS])
def test_every_assert_says_which_claim_failed(path):
    bare = []
    for i, cell in enumerate(code_cells(path)):
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Assert) and not isinstance(node.msg, (ast.JoinedStr, ast.Constant)):
                bare.append(f"code cell {i}: {ast.get_source_segment(cell.source, node)[:80]}")
    assert not bare, f"{path.name}: asserts without a message naming the claim: {bare}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem.split("_")[0] for p in NOTEBOOKS])
def test_parameters_cell_has_seed_and_smoke(path):
    params = [c for c in code_cells(path) if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, f"{path.name}: one cell tagged 'parameters', found {len(params)}"
    names = {t.id for node in ast.parse(params[0].source).body if isinstance(node, ast.Assign)
             for t in node.targets if isinstance(t, ast.Name)}
    assert {"seed", "smoke"} <= names, f"{path.name}: the parameters cell lacks {({'seed', 'smoke'} - names)}"
