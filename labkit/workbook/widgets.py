"""Knobs for the notebooks that still work headless.

`knobs(fn, tau=(0.0, 0.2, 0.01), ...)` shows sliders that re-run `fn(**values)` when moved, in
JupyterLab. It displays its one widget itself and returns None, so a cell that ends in
`widgets.knobs(...)` shows it once (an `Out[..]` copy would be a second, live one).

Each move runs `fn` with its output collected (prints, displays and matplotlib figures, in their
order) and then replaces the widget's output area in one step (`Output.outputs = ...`): the old
view stays until the new one is complete, so the page never collapses while `fn` computes.
ipywidgets' `interactive_output` clears the area at the first new output instead, so a print
followed by a slow figure leaves one line of text showing in between.

Run headless (papermill, nbval, `labkit run`, where no front-end draws widgets), a slider cannot
be moved and the widget's own output is not stored in the notebook; then `fn` is called once with
the default values and its output is printed in the cell as usual, so the report still shows it.
Headless is signalled by the environment variable LABKIT_HEADLESS=1, which `labkit run`, the test
suite and tools/nb.py set.
"""
from __future__ import annotations

import contextlib
import io
import numbers
import os
import traceback

import ipywidgets
from IPython.core.displaypub import DisplayPublisher
from IPython.core.getipython import get_ipython
from IPython.display import display
from ipywidgets.widgets.interaction import show_inline_matplotlib_plots

from ..validate import message
from ._args import check_dict, shown


def headless() -> bool:
    return os.environ.get("LABKIT_HEADLESS", "") == "1"


def _widget(name: str, spec, value):
    if isinstance(spec, (list, tuple)) and spec and all(isinstance(s, str) for s in spec):
        return ipywidgets.Dropdown(options=list(spec), value=value if value is not None else spec[0],
                                   description=name)
    lo, hi, step = spec
    if all(isinstance(v, int) for v in (lo, hi, step)) and (value is None or isinstance(value, int)):
        return ipywidgets.IntSlider(min=lo, max=hi, step=step, value=lo if value is None else value,
                                    description=name, continuous_update=False)
    return ipywidgets.FloatSlider(min=lo, max=hi, step=step, value=lo if value is None else value,
                                  description=name, readout_format=".3g", continuous_update=False)


def _check_spec(name: str, spec) -> None:
    allowed = "a slider (lo, hi, step) with lo < hi and step > 0, or a non-empty list of str choices"
    if isinstance(spec, (list, tuple)) and spec and all(isinstance(s, str) for s in spec):
        return
    real = isinstance(spec, (list, tuple)) and len(spec) == 3 and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in spec)
    if not real:
        raise TypeError(message(name, "knobs", allowed, shown(spec)))
    lo, hi, step = spec
    if not (lo < hi and step > 0):                     # also False for NaN
        raise ValueError(message(name, "knobs", allowed, tuple(spec)))


class _Collect(DisplayPublisher):
    """Stands in for the shell's display publisher and for sys.stdout / sys.stderr while `fn`
    runs: `outputs` gets what it printed and displayed, in order, as nbformat output dicts."""

    def __init__(self):
        super().__init__()
        self.outputs = []

    def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
        self.outputs.append({"output_type": "display_data", "data": data, "metadata": metadata or {}})

    def clear_output(self, wait=False):
        self.outputs.clear()

    def stream(self, name: str):
        collect = self

        class Stream(io.TextIOBase):
            def writable(self):
                return True

            def write(self, text):
                last = collect.outputs[-1] if collect.outputs else {}
                if last.get("output_type") == "stream" and last.get("name") == name:
                    last["text"] += text
                else:
                    collect.outputs.append({"output_type": "stream", "name": name, "text": text})
                return len(text)

        return Stream()


def _render(fn, kwargs: dict) -> tuple:
    """`fn(**kwargs)`'s outputs, collected (an exception becomes an error output)."""
    show_inline_matplotlib_plots()                 # figures of the cell so far are not ours
    shell, collect = get_ipython(), _Collect()
    saved = shell.display_pub if shell is not None else None
    try:
        if shell is not None:
            shell.display_pub = collect
        with contextlib.redirect_stdout(collect.stream("stdout")), \
                contextlib.redirect_stderr(collect.stream("stderr")):
            try:
                fn(**kwargs)
                show_inline_matplotlib_plots()     # a figure drawn but not shown is shown
            except Exception as e:                 # noqa: BLE001 — shown in the widget, as interact does
                collect.outputs.append({"output_type": "error", "ename": type(e).__name__,
                                        "evalue": str(e),
                                        "traceback": [line.rstrip("\n") for line in traceback.format_exception(e)]})
    finally:
        if shell is not None:
            shell.display_pub = saved
    return tuple(collect.outputs)


def knobs(fn, defaults: dict | None = None, **specs) -> None:
    """Sliders/dropdowns {name: (lo, hi, step) or [choices]} that drive `fn(**values)`.

    defaults: the starting values (else the low end / first choice). Displays one widget (the
    controls above `fn`'s output, redrawn in one step on each move) and returns None; headless,
    prints `fn(**defaults)`'s output in the cell instead.
    """
    func = "knobs"
    if not callable(fn):
        raise TypeError(message("fn", func, "a function fn(**values)", shown(fn)))
    if defaults is not None:
        check_dict(defaults, "defaults", func, "None or a dict {knob name: starting value}")
        unknown = sorted(set(defaults) - set(specs))
        if unknown:
            raise ValueError(message("defaults", func, "a dict keyed by knob names among "
                                     + ", ".join(map(repr, specs)), unknown))
    for name, spec in specs.items():
        _check_spec(name, spec)
    defaults = dict(defaults or {})
    controls = {name: _widget(name, spec, defaults.get(name)) for name, spec in specs.items()}
    if headless():
        fn(**{name: w.value for name, w in controls.items()})
        return None
    out = ipywidgets.Output()

    def redraw(_change=None):
        out.outputs = _render(fn, {name: w.value for name, w in controls.items()})

    for w in controls.values():
        w.observe(redraw, "value")
    redraw()
    display(ipywidgets.VBox([ipywidgets.HBox(list(controls.values())), out]))
    return None
