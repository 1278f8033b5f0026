"""labkit: a small, tested library for learning and analysing neural-network compression.

    from labkit import data, models, train, sparsity, prune, quantize, distill, lowrank, coding

One module per technique; `labkit.<module>` also works, imported on first use so that
`import labkit` stays fast. Two subpackages hold the rest: `labkit.deploy`, the on-device int8
chain, and `labkit.workbook`, the machinery that runs the notebooks as a workbook. Their modules
keep their old names too (`labkit.mobile` is `labkit.deploy.mobile` and `labkit.report` is
`labkit.workbook.report`, the same objects): MOVED maps each old name to its new place.
"""
import pkgutil as _pkgutil
import sys as _sys
from types import ModuleType as _ModuleType
from importlib import import_module as _import_module
from importlib.util import find_spec as _find_spec
from importlib.util import spec_from_loader as _spec_from_loader

__version__ = "0.1.0"

MOVED = {   # old name in labkit → the module's full dotted name now
    **{name: f"labkit.deploy.{name}" for name in ("mobilenet", "images", "pt2e", "adaround", "xnnpack", "mobile")},
    **{name: f"labkit.workbook.{name}" for name in ("cli", "sweep", "report", "students", "check", "widgets", "plots")},
    "_validate": "labkit.validate",   # the entry checks, now public (old notebooks import the old name)
}


class _MovedFinder:   # importlib.abc.MetaPathFinder and Loader, without importing importlib.abc (~20 ms)
    """`import labkit.<old>` of a module listed in MOVED gives the module at its new place itself:
    one object under two names, so a monkeypatch through either name is seen by both. (No file
    stays at the old place: git then follows each move as a rename.)"""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith("labkit.") and fullname[len("labkit."):] in MOVED:
            return _spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return _import_module(MOVED[spec.name[len("labkit."):]])

    def exec_module(self, module):
        pass   # create_module returned the imported module


if not any(isinstance(f, _MovedFinder) for f in _sys.meta_path):
    _sys.meta_path.insert(0, _MovedFinder())   # before any file finder: no copy at an old path wins


def __getattr__(name):
    if not name.startswith("_") and _find_spec(f"labkit.{name}") is not None:
        return _import_module(f"labkit.{name}")
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")


def __dir__():
    """The module's names and its public submodules and subpackages, found in the package folder
    (so that Jupyter's tab completion on `labkit.` lists the modules that `__getattr__` imports)."""
    subs = {m.name for m in _pkgutil.iter_modules(__path__) if not m.name.startswith("_")}
    loaded = {n for n, v in globals().items() if isinstance(v, _ModuleType) and not n.startswith("_")}
    return sorted(loaded | subs | {n for n in MOVED if not n.startswith("_")} | {"__version__"})
