"""labkit: a small, tested library for learning and analysing neural-network compression.

    from labkit import data, models, train, sparsity, prune, quantize, distill, lowrank, coding

One module per technique; `labkit.<module>` also works, imported on first use so that
`import labkit` stays fast.
"""
import pkgutil as _pkgutil
from importlib import import_module as _import_module
from importlib.util import find_spec as _find_spec

__version__ = "0.1.0"


def __getattr__(name):
    if not name.startswith("_") and _find_spec(f"labkit.{name}") is not None:
        return _import_module(f"labkit.{name}")
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")


def __dir__():
    """The module's names and its public submodules and subpackages, found in the package folder
    (so that Jupyter's tab completion on `labkit.` lists the modules that `__getattr__` imports)."""
    subs = {m.name for m in _pkgutil.iter_modules(__path__) if not m.name.startswith("_")}
    return sorted(set(globals()) | subs)
