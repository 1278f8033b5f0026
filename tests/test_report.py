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


def a_report():
    """An executed notebook as a report holds one: a formula, a table, a widget view (a
    progress bar's) with its text fallback, and the widget state papermill stores."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("fit()")
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        report.WIDGET_VIEW: {"model_id": "cb30", "version_major": 2, "version_minor": 0},
        "text/plain": "epochs: 100%|##########| 30/30"})]
    nb.cells = [nbformat.v4.new_markdown_cell(r"$$\rho = \frac{|\{w_{ij} \neq 0\}|}{m \times n}$$"), cell]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2}}
    return nb


def test_html_needs_no_network(tmp_path):
    """nbconvert's own page loads MathJax and require.js from a CDN and the widget manager from
    unpkg; the report's loads only its local MathJax copy, and shows the widget's fallback."""
    import re

    nb = a_report()
    page = report.html(nb, tmp_path)
    sources = re.findall(r"<script[^>]*\ssrc=\"([^\"]+)\"", page)
    assert sources == ["mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"]
    assert (tmp_path / "mathjax" / "MathJax.js").is_file()
    assert (tmp_path / "mathjax" / "config" / "TeX-AMS-MML_HTMLorMML-full.js").is_file()
    assert "unpkg" not in page and "cdnjs" not in page and "require.min.js" not in page
    assert "epochs: 100%|##########| 30/30" in page and report.WIDGET_VIEW not in page
    assert r"\frac{|\{w_{ij} \neq 0\}|}{m \times n}" in page      # MathJax typesets it in the browser
    assert "widgets" in nb.metadata and report.WIDGET_VIEW in nb.cells[1].outputs[0]["data"]   # nb unchanged


def test_html_keeps_an_existing_mathjax_copy(tmp_path):
    report.html(a_report(), tmp_path)
    marker = tmp_path / "mathjax" / "MathJax.js"
    marker.write_text("// kept")
    report.html(a_report(), tmp_path)
    assert marker.read_text() == "// kept"
