"""Mixed precision: one bit width per layer under a model-size budget, by greedy and by DP.

Seed 000 §2.3 lists greedy, divide-and-conquer and dynamic programming as "compression methods"
(erratum 9). They are search strategies; this is where they truly apply. Given L layers, a set of
bit widths B, the measured *sensitivity* c_l(b) (how much the loss grows when only layer l is
quantized to b bits) and the size m_l(b) in bytes, choose b_l for every layer to

    minimize Σ_l c_l(b_l)   subject to   Σ_l m_l(b_l) ≤ M          (a multiple-choice knapsack)

assuming the sensitivities add up (a first-order approximation, checked in notebook 04).

- `greedy`: start with every layer at its widest b; while over budget, narrow the one layer
  whose step costs least sensitivity per byte saved, Δc / Δm (the larger Δm on a tie). Fast, not
  always optimal. `schedules.allocate` solves pruning's per-layer amounts with the same two.
- `dp`: dynamic programming over layers keeping, for each reachable total size, the least
  total cost (only the Pareto front of (size, cost) pairs); exact, so never worse than greedy.
"""
from __future__ import annotations

import itertools
import math

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from .count import layer_bits
from .validate import message, check_choice, check_float, check_int, prunable_layers
from .ptq import quantize_weights
from .train import predict


def _check_tables(costs, sizes, budget, func):
    _check_costs(costs, sizes, func)
    budget = check_float(budget, "budget", func, low=0)
    return budget


def _check_costs(costs, sizes, func):
    if not isinstance(costs, (list, tuple)) or not isinstance(sizes, (list, tuple)) or not costs:
        raise TypeError(message("costs", func, "a non-empty list of {bits: cost} dicts, one per "
                                 "layer, with sizes alike", type(costs).__name__))
    if len(costs) != len(sizes) or any(set(c) != set(s) or not c for c, s in zip(costs, sizes)):
        raise ValueError(message("sizes", func, "one {bits: size} dict per layer with the same "
                                  "keys as costs", sizes))


def total(choice, costs, sizes) -> tuple[float, float]:
    """(Σ cost, Σ size) of a choice (one key per layer)."""
    _check_costs(costs, sizes, "total")
    if not isinstance(choice, (list, tuple)):
        raise TypeError(message("choice", "total", "a list with one key of costs per layer",
                                 type(choice).__name__))
    try:
        known = len(choice) == len(costs) and all(b in c for c, b in zip(costs, choice))
    except TypeError:                                     # an unhashable key
        known = False
    if not known:
        raise ValueError(message("choice", "total", f"{len(costs)} keys, one of each layer's costs",
                                  choice))
    return _total(choice, costs, sizes)


def _total(choice, costs, sizes) -> tuple[float, float]:
    return (sum(c[b] for c, b in zip(costs, choice)), sum(s[b] for s, b in zip(sizes, choice)))


def greedy(costs: list[dict], sizes: list[dict], budget: float) -> list:
    """Per-layer choices (keys of costs[l]) by greedy narrowing; ValueError if the budget is
    below the smallest possible size."""
    budget = _check_tables(costs, sizes, budget, "greedy")
    if sum(min(s.values()) for s in sizes) > budget:
        raise ValueError(message("budget", "greedy", f"≥ the smallest size "
                                  f"{sum(min(s.values()) for s in sizes)}", budget))
    order = [sorted(s, key=lambda b: s[b], reverse=True) for s in sizes]  # widest → narrowest
    pos = [0] * len(costs)
    while _total([o[p] for o, p in zip(order, pos)], costs, sizes)[1] > budget:
        best, best_ratio = None, None
        for l, (o, p) in enumerate(zip(order, pos)):
            if p + 1 < len(o):
                dm = sizes[l][o[p]] - sizes[l][o[p + 1]]
                dc = costs[l][o[p + 1]] - costs[l][o[p]]
                ratio = (dc / dm if dm > 0 else float("inf"), -dm)   # on a tie, the larger saving
                if best is None or ratio < best_ratio:
                    best, best_ratio = l, ratio
        pos[best] += 1
    return [o[p] for o, p in zip(order, pos)]


def dp(costs: list[dict], sizes: list[dict], budget: float) -> list:
    """The optimal per-layer choices (least Σ cost with Σ size ≤ budget), exactly."""
    budget = _check_tables(costs, sizes, budget, "dp")
    front = [(0.0, 0.0, ())]                              # (size, cost, choices so far)
    for c, s in zip(costs, sizes):
        states = sorted(((m + s[b], k + c[b], ch + (b,)) for m, k, ch in front for b in c
                         if m + s[b] <= budget), key=lambda t: (t[0], t[1]))
        front = []
        for st in states:                                 # keep the Pareto front only
            if not front or st[1] < front[-1][1]:
                front.append(st)
        if not front:
            raise ValueError(message("budget", "dp", f"≥ the smallest size "
                                      f"{sum(min(t.values()) for t in sizes)}", budget))
    return list(min(front, key=lambda t: (t[1], t[0]))[2])


def brute_force(costs: list[dict], sizes: list[dict], budget: float) -> list:
    """Every combination (for tests on small cases): the least Σ cost within the budget."""
    budget = _check_tables(costs, sizes, budget, "brute_force")
    best = None
    for choice in itertools.product(*[list(c) for c in costs]):
        k, m = _total(choice, costs, sizes)
        if m <= budget and (best is None or k < best[0]):
            best = (k, list(choice))
    if best is None:
        raise ValueError(message("budget", "brute_force", "large enough for some choice", budget))
    return best[1]


def layer_sizes(model: nn.Module, bits_choices=(2, 4, 8), scheme: str = "symmetric",
                granularity: str = "channel") -> list[dict]:
    """{bits: bytes} per Linear / Conv layer: its weights at `bits` with their scales (and zero
    points), plus its bias in float32 (`count.layer_bits`, rounded up to whole bytes). The whole
    model's bytes at one choice: `count.model_bytes`."""
    layers = prunable_layers(model, "model", "layer_sizes")
    return [{b: math.ceil(layer_bits(m, b, scheme, granularity) / 8) for b in bits_choices} for _, m in layers]


@torch.no_grad()
def sensitivity(model: nn.Module, X: torch.Tensor, y: torch.Tensor, bits_choices=(2, 4, 8),
                scheme: str = "symmetric", granularity: str = "channel") -> pd.DataFrame:
    """c_l(b): the increase of the cross-entropy on (X, y) when only layer l's weights are
    quantized to b bits. DataFrame, one row per layer, one column per b."""
    layers = prunable_layers(model, "model", "sensitivity")
    for b in bits_choices:
        check_int(b, "bits_choices", "sensitivity", low=1, high=16)
    base = float(F.cross_entropy(predict(model, X), y))
    rows = {}
    for name, _ in layers:
        rows[name] = {b: float(F.cross_entropy(predict(quantize_weights(
            model, {name: b}, scheme, granularity), X), y)) - base for b in bits_choices}
    return pd.DataFrame.from_dict(rows, orient="index")
