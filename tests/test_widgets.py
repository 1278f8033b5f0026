"""widgets.knobs: one widget per call, its output replaced in one step, headless prints once.

Outside a kernel no front-end draws the widget; the tests read what it would show: the object
`knobs` displays (captured by replacing `widgets.display`) and its Output's `outputs`, the
nbformat output dicts the front-end renders. An IPython shell stands in for the kernel's, so
`display(...)` inside a callback goes through a display publisher as in JupyterLab.
"""
import ipywidgets
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.display import clear_output, display

from labkit.workbook import widgets


@pytest.fixture
def live(monkeypatch):
    """Not headless, a shell, and the list of objects `knobs` displays."""
    monkeypatch.setenv("LABKIT_HEADLESS", "0")
    shown = []
    monkeypatch.setattr(widgets, "display", lambda *objs, **kw: shown.extend(objs))
    existed = InteractiveShell.initialized()
    shell = InteractiveShell.instance()
    yield shown, shell
    if not existed:
        InteractiveShell.clear_instance()


def parts(box):
    """(the sliders, the Output) of the box `knobs` displays: VBox([HBox(controls), Output])."""
    assert isinstance(box, ipywidgets.VBox) and len(box.children) == 2
    controls, out = box.children
    assert isinstance(controls, ipywidgets.HBox) and isinstance(out, ipywidgets.Output)
    return list(controls.children), out


class Table:
    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/plain": "a table", "text/html": "<b>a table</b>"}


def test_one_widget_is_displayed_and_none_returned(live):
    """A cell ending in `widgets.knobs(...)` must not show a second copy as Out[..]: the call
    displays its box once and returns None (the old knobs returned the box it displayed)."""
    shown, _ = live
    result = widgets.knobs(lambda tau, mode: None, {"tau": 0.05}, tau=(0.0, 0.2, 0.005), mode=["a", "b"])
    assert result is None
    assert len(shown) == 1
    controls, _ = parts(shown[0])
    assert [type(w).__name__ for w in controls] == ["FloatSlider", "Dropdown"]
    assert controls[0].value == 0.05 and controls[1].value == "a"


def test_the_output_holds_what_fn_printed_and_displayed_in_order(live):
    shown, _ = live

    def show(bits):
        print(f"bits = {bits}")
        display(Table())
        print("done")

    widgets.knobs(show, {"bits": 4}, bits=(2, 8, 1))
    _, out = parts(shown[0])
    assert [(o["output_type"], o.get("name")) for o in out.outputs] == [
        ("stream", "stdout"), ("display_data", None), ("stream", "stdout")]
    assert out.outputs[0]["text"] == "bits = 4\n" and out.outputs[2]["text"] == "done\n"
    assert out.outputs[1]["data"] == {"text/plain": "a table", "text/html": "<b>a table</b>"}


def test_a_move_replaces_the_output_once_with_the_new_state(live):
    """One slider move → fn runs with the new value and the output area changes in one step
    (no clear first: the page keeps its height while fn computes)."""
    shown, _ = live
    calls = []

    def show(tau):
        calls.append(tau)
        print(f"tau = {tau:.3f}")
        print("second line")

    widgets.knobs(show, {"tau": 0.05}, tau=(0.0, 0.2, 0.005))
    (slider,), out = parts(shown[0])
    changes = []
    out.observe(lambda change: changes.append(change["new"]), "outputs")
    slider.value = 0.1
    assert calls == [0.05, 0.1]
    assert len(changes) == 1
    assert changes[0] == ({"output_type": "stream", "name": "stdout", "text": "tau = 0.100\nsecond line\n"},)


def test_clear_output_inside_fn_and_errors_stay_in_the_widget(live):
    shown, _ = live

    def show(n):
        print("old")
        clear_output(wait=True)
        if n > 1:
            raise ValueError(f"n = {n} is too large")
        print("new")

    widgets.knobs(show, n=(1, 3, 1))
    (slider,), out = parts(shown[0])
    assert out.outputs == ({"output_type": "stream", "name": "stdout", "text": "new\n"},)
    slider.value = 2                                   # no exception escapes into the kernel
    (error,) = out.outputs
    assert error["output_type"] == "error" and error["ename"] == "ValueError"
    assert error["evalue"] == "n = 2 is too large" and "ValueError" in error["traceback"][-1]


def test_sliders_update_on_release_not_while_dragging(live):
    shown, _ = live
    widgets.knobs(lambda rank, tau: None, rank=(1, 128, 1), tau=(0.0, 1.0, 0.1))
    controls, _ = parts(shown[0])
    assert [w.continuous_update for w in controls] == [False, False]


def test_headless_prints_the_default_view_once_and_displays_nothing(monkeypatch, capsys):
    monkeypatch.setenv("LABKIT_HEADLESS", "1")
    shown = []
    monkeypatch.setattr(widgets, "display", lambda *objs, **kw: shown.extend(objs))
    result = widgets.knobs(lambda tau: print(f"tau = {tau}"), {"tau": 0.05}, tau=(0.0, 0.2, 0.005))
    assert result is None and shown == []
    assert capsys.readouterr().out == "tau = 0.05\n"


def test_bad_specs_and_defaults_are_refused():
    with pytest.raises(ValueError, match="The 'tau' parameter of knobs must be a slider"):
        widgets.knobs(print, tau=(0.2, 0.0, 0.01))
    with pytest.raises(TypeError, match="The 'tau' parameter of knobs"):
        widgets.knobs(print, tau="0.1")
    with pytest.raises(ValueError, match="The 'defaults' parameter of knobs"):
        widgets.knobs(print, {"bits": 3}, tau=(0.0, 0.2, 0.01))
