"""labkit: a small, tested library for learning and analysing neural-network compression.

    from labkit import data, models, train, sparsity, prune, quantize, distill, lowrank, coding

One module per technique; `labkit.<module>` also works, imported on first use so that
`import labkit` stays fast.
"""
from importlib import import_module
from importlib.util import find_spec

__version__ = "0.1.0"


def __getattr__(name):
    if not name.startswith("_") and find_spec(f"labkit.{name}") is not None:
        return import_module(f"labkit.{name}")
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")
