"""labkit.workbook: the machinery that turns the notebooks into a workbook.

    runner    find a notebook, check its parameters, run it as a report (written atomically)
    numerics  the reference numeric environment the stored outputs come from
    cli       the `labkit` command: list, run, sweep, students
    sweep     one notebook over a parameter grid, every run's metrics in one table
    report    `record(...)`: a notebook's metrics, shown and stored in its report
    students  student copies of the notebooks, solutions replaced by stubs
    check     automatic checks of the exercises, with specific feedback
    widgets   knobs: sliders that still work headless (then the default view is printed)
    plots     small matplotlib helpers shared by the notebooks

The imports run one way: cli → sweep → runner → report. Technique modules live flat in labkit/.
The old names keep working: `from labkit import report` and `import labkit.cli` give these same
module objects. Submodules are imported on first use.
"""
from importlib import import_module
from importlib.util import find_spec


def __getattr__(name):
    if not name.startswith("_") and find_spec(f"{__name__}.{name}") is not None:
        return import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
