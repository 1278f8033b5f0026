"""Key metrics of a notebook run, recorded for `labkit run` and `labkit sweep`.

A notebook ends with `labkit.report.record(accuracy=0.972, sparsity=0.9, ...)`. The values are
displayed in the cell (text/plain, so nbval compares them) and stored in the executed notebook
under the MIME type below. `labkit run` reads them back and writes reports/<name>.json beside the
report; `labkit sweep` collects them from every run into one table. Nothing is written while the
notebook runs, so an interrupted run leaves no metrics file behind.

`recorded_names(path)` reads, without running it, which metrics a notebook records: the keyword
names of its `record(...)` calls (`labkit list` shows them, and whether a sweep of it draws a
Pareto front: `labkit.workbook.sweep.pareto_pairs`).

`html(nb, folder)` is the report's HTML page, which needs no network (the project works
offline): nbconvert's lab template loads MathJax and require.js from a CDN and the widget manager
from unpkg; here MathJax 2.7 is the copy the `jupyter-server-mathjax` package ships, put once
beside the page (folder/mathjax/), require.js is left out (no output of labkit needs it), and a
widget view is shown by its static fallback (its text or HTML: the notebook keeps no widget
state, and the live manager is a JavaScript package no Python package ships).
"""
from __future__ import annotations

import ast
import copy
import importlib.util
import math
import numbers
import shutil
from pathlib import Path

from IPython.display import display

from ..validate import message
from ._args import check_folder, check_notebook, check_path

MIME = "application/vnd.labkit.metrics+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
MATHJAX = "mathjax"           # the folder beside a report page that holds its MathJax copy


def record(**metrics) -> dict:
    """Display and store `metrics` (numbers, strings or bools) as this run's key results."""
    clean = {}
    for name, value in metrics.items():
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            value = int(value)
        elif isinstance(value, numbers.Real) and not isinstance(value, bool):
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(message(name, "record", "a finite number (a metric)", value))
        elif not isinstance(value, (str, bool)):
            raise TypeError(message(name, "record", "a number, str or bool (a metric)", type(value).__name__))
        clean[name] = value
    text = "metrics: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                   for k, v in clean.items())
    display({MIME: clean, "text/plain": text}, raw=True)
    return clean


def read(nb) -> dict:
    """The metrics recorded in an executed notebook (merged in order), {} if none."""
    check_notebook(nb, "nb", "read")
    found = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if MIME in out.get("data", {}):
                found.update(out["data"][MIME])
    return found


def recorded_names(path: Path) -> list[str]:
    """The metric names a notebook records, read from its source with `ast` (it is not run): the
    keyword names of every `record(...)` / `report.record(...)` call, in order, each once.

    `**mapping` keywords are not seen (their names are known only when the notebook runs); a
    cell that is not Python (a line magic, a shell escape) is read without those lines."""
    path = check_path(path, "path", "recorded_names")
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # noqa: BLE001 — any unreadable file is the same bad argument
        raise ValueError(message("path", "recorded_names", "a Jupyter notebook (.ipynb)", str(path))) from None
    names = []
    for cell in nb.cells:
        if cell.cell_type != "code" or "record" not in cell.source:
            continue
        source = "\n".join(line for line in cell.source.splitlines()
                           if not line.lstrip().startswith(("%", "!")))
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                called = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
                if called == "record":
                    names += [k.arg for k in node.keywords if k.arg and k.arg not in names]
    return names


# nbconvert's lab page, less its network: no require.js, widget manager or mermaid, MathJax from `url`
# configured for the STIX-Web fonts, the only ones jupyter-server-mathjax ships.
_PAGE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}
<script type="text/x-mathjax-config">
MathJax.Hub.Config({
  tex2jax: {inlineMath: [['$', '$'], ['\\(', '\\)']], displayMath: [['$$', '$$'], ['\\[', '\\]']],
            processEscapes: true, processEnvironments: true},
  TeX: {equationNumbers: {autoNumber: "AMS", useLabelIds: true}},
  "HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web", imageFont: null,
               linebreaks: {automatic: true}},
  displayAlign: "center", messageStyle: "none"
});
</script>
<script src="{{ resources.mathjax_url }}"></script>
{%- endblock html_head_js_mathjax -%}
"""


def mathjax(folder: Path) -> str | None:
    """The URL, relative to a page in `folder`, of the local MathJax copy (folder/mathjax/, copied
    there from the jupyter-server-mathjax package when missing), or None without that package."""
    folder = check_folder(folder, "folder", "mathjax")
    spec = importlib.util.find_spec("jupyter_server_mathjax")
    if spec is None or spec.origin is None:
        return None
    dest = folder / MATHJAX
    if not (dest / "MathJax.js").is_file():
        shutil.copytree(Path(spec.origin).parent / "static", dest, dirs_exist_ok=True)
    return f"{MATHJAX}/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"


def html(nb, folder: Path) -> str:
    """The HTML page of the executed notebook `nb`, to be written in `folder`: maths, tables and
    plots shown with no network (MathJax from folder/mathjax/, see `mathjax`; without the
    jupyter-server-mathjax package, nbconvert's CDN). `nb` is not changed."""
    check_notebook(nb, "nb", "html")
    folder = check_folder(folder, "folder", "html")
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    nb = copy.deepcopy(nb)
    nb.get("metadata", {}).pop("widgets", None)
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            out.get("data", {}).pop(WIDGET_VIEW, None)
    exporter = HTMLExporter(extra_loaders=[DictLoader({"labkit.html.j2": _PAGE})],
                            template_file="labkit.html.j2")
    url = mathjax(folder)
    if url:
        exporter.mathjax_url = url
    body, _ = exporter.from_notebook_node(nb)
    return body
