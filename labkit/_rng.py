"""`seeded`: run a block with torch's global RNG seeded, then restore it.

A leaf (it imports no other labkit module but `validate`), so that the model builders of
`labkit.models` and `labkit.deploy.mobilenet` share it without importing each other.
"""
from __future__ import annotations

import torch

from .validate import check_int


class seeded:
    """Context manager: run the block with torch's global RNG seeded by `seed`, then restore it.
    seed=None: leave the RNG alone. `func` names the caller in the error for a bad seed."""

    def __init__(self, seed, func):
        self.seed = None if seed is None else check_int(seed, "seed", func, low=0)

    def __enter__(self):
        if self.seed is not None:
            self.state = torch.random.get_rng_state()
            torch.manual_seed(self.seed)

    def __exit__(self, *exc):
        if self.seed is not None:
            torch.random.set_rng_state(self.state)
        return False
