"""Knobs for the notebooks that still work headless.

`knobs(fn, tau=(0.0, 0.2, 0.01), ...)` shows sliders that re-run `fn(**values)` when moved, in
JupyterLab. Run headless (papermill, nbval, `labkit run`, where no front-end draws widgets), a
slider cannot be moved and the widget's own output is not stored in the notebook; then `fn` is
called once with the default values and its output is printed in the cell as usual, so the
report still shows it. Headless is signalled by the environment variable LABKIT_HEADLESS=1, which
`labkit run`, the test suite and tools/nb.py set.
"""
from __future__ import annotations

import numbers
import os

import ipywidgets
from IPython.display import display

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
        return ipywidgets.IntSlider(min=lo, max=hi, step=step,
                                    value=lo if value is None else value, description=name)
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


def knobs(fn, defaults: dict | None = None, **specs):
    """Sliders/dropdowns {name: (lo, hi, step) or [choices]} that drive `fn(**values)`.

    defaults: the starting values (else the low end / first choice). Returns the widget
    (None when headless, after printing `fn(**defaults)`).
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
    out = ipywidgets.interactive_output(fn, controls)
    box = ipywidgets.VBox([ipywidgets.HBox(list(controls.values())), out])
    display(box)
    return box
