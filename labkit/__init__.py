"""labkit: a small, tested library for learning and analysing neural-network compression.

    from labkit import data, models, train, sparsity, prune
"""
from importlib import import_module

__version__ = "0.1.0"
__all__ = ["data", "models", "train", "sparsity", "prune"]


def __getattr__(name):  # lazy: `import labkit` stays fast, `labkit.prune` works
    if name in __all__ or name in {"quantize", "distill", "lowrank", "coding", "mobile",
                                   "plots", "widgets", "cli", "check"}:
        return import_module(f"labkit.{name}")
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")
