import math

import nbformat
import pytest

from labkit import report


def test_record_returns_clean_values_and_read_finds_them(monkeypatch):
    shown = []
    monkeypatch.setattr(report, "display", lambda obj, raw: shown.append(obj))
    got = report.record(accuracy=0.97251, n=3, model="lenet5", ok=True)
    assert got == {"accuracy": 0.97251, "n": 3, "model": "lenet5", "ok": True}
    assert shown[0]["text/plain"] == "metrics: accuracy=0.9725, n=3, model=lenet5, ok=True"
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [nbformat.v4.new_output("display_data", data=shown[0])]
    nb.cells = [cell]
    assert report.read(nb) == got


def test_record_rejects_what_a_table_cannot_hold():
    with pytest.raises(TypeError, match="The 'curve' parameter of record must be a number, str or bool"):
        report.record(curve=[1, 2])
    with pytest.raises(ValueError, match="The 'loss' parameter of record must be a finite number"):
        report.record(loss=math.nan)
