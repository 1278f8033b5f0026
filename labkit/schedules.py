"""When and how much to prune: gradual schedules, the lottery ticket, per-layer sensitivity.

Iterative pruning (seed 001 §3.2's five steps: train → rank weights → prune → retrain → repeat)
with the automated gradual pruning (AGP) schedule of Zhu & Gupta 2017
(https://arxiv.org/abs/1710.01878): from an initial sparsity s_i at step t0 to the final s_f
in n pruning steps Δt apart,

    s_t = s_f + (s_i − s_f) · (1 − (t − t0) / (n Δt))³        for t0 ≤ t ≤ t0 + n Δt

(s_i before t0, s_f after): many weights go early, while they are redundant, few at the end.

Lottery ticket (Frankle & Carbin 2019, https://arxiv.org/abs/1803.03635): train, prune a
fraction p of the remaining weights by magnitude, *rewind* the survivors to their initial
values θ₀ and train again; after r rounds the density is (1 − p)^r. The control keeps the
same mask but draws new initial weights.

Sensitivity (Han et al. 2015, https://arxiv.org/abs/1506.02626): prune one layer at a time at
growing amounts and record the accuracy; a layer whose accuracy holds gets a higher ratio.
"""
from __future__ import annotations

import copy
import functools

import pandas as pd
import torch
from torch import nn

from . import criteria, mixed, prune, sparsity, train
from .validate import check_choice, check_float, check_int, check_module, check_xy, message, per_layer, prunable_layers


def agp_sparsity(t: int, s_f: float, s_i: float = 0.0, t0: int = 0, n: int = 10, dt: int = 1,
                 power: int = 3) -> float:
    """s_t of Zhu & Gupta's schedule (see the module docstring); power=1 gives a linear ramp."""
    t = check_int(t, "t", "agp_sparsity", low=0)
    s_f = check_float(s_f, "s_f", "agp_sparsity", low=0, high=1, closed="left")
    s_i = check_float(s_i, "s_i", "agp_sparsity", low=0, high=s_f)
    t0 = check_int(t0, "t0", "agp_sparsity", low=0)
    n = check_int(n, "n", "agp_sparsity", low=1)
    dt = check_int(dt, "dt", "agp_sparsity", low=1)
    power = check_int(power, "power", "agp_sparsity", low=1)
    if t < t0:
        return s_i
    frac = min(1.0, (t - t0) / (n * dt))
    return s_f + (s_i - s_f) * (1.0 - frac) ** power


def _score(model, X, y, criterion):
    return criteria.scores(model, X, y, criterion=criterion)


def gradual_prune_(model: nn.Module, X: torch.Tensor, y: torch.Tensor, amount, steps: int = 5,
                   epochs_per_step: int = 2, fine_tune_epochs: int = 10, lr: float = 1e-3,
                   criterion: str = "magnitude", scope: str = "layer", seed: int = 0, power: int = 3,
                   X_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None,
                   fit_kwargs: dict | None = None) -> list[dict]:
    """Prune → retrain `steps` times along the AGP schedule, then fine-tune. In place.

    amount: final fraction s_f to remove (a float, or {layer: s_f} for per-layer ratios; each layer
    follows its own s_t; `validate.per_layer`: a layer left out is not pruned). Pruning step j = 1..steps prunes to s_j = agp_sparsity(j, s_f, n=steps),
    (power=1: a linear ramp instead of the cubic one), then trains `epochs_per_step` epochs at constant `lr`; `fine_tune_epochs` more follow, with a
    cosine-annealed lr. fit_kwargs: more arguments for `train.fit` (e.g. max_shift=0). Returns one dict per step: step, target, sparsity, val_accuracy (if X_val).
    """
    layers = prunable_layers(model, "model", "gradual_prune_")
    steps = check_int(steps, "steps", "gradual_prune_", low=1)
    epochs_per_step = check_int(epochs_per_step, "epochs_per_step", "gradual_prune_", low=0)
    fine_tune_epochs = check_int(fine_tune_epochs, "fine_tune_epochs", "gradual_prune_", low=0)
    seed = check_int(seed, "seed", "gradual_prune_", low=0)
    finals = per_layer(amount, [n for n, _ in layers], functools.partial(check_float, low=0, high=1, closed="left"),
                       "amount", "gradual_prune_")
    history, kw = [], dict(fit_kwargs or {}, progress=False)

    def record(step, target):
        row = {"step": step, "target": target, "sparsity": sparsity.sparsity(model)}
        if X_val is not None:
            row["val_accuracy"] = train.accuracy(model, X_val, y_val)
        history.append(row)

    for j in range(1, steps + 1):
        amounts = {name: agp_sparsity(j, s_f, n=steps, power=power) for name, s_f in finals.items()}
        scores = {k: v for k, v in _score(model, X, y, criterion).items() if k in amounts}
        prune.prune_by_scores_(model, scores, amounts if scope == "layer" else
                               next(iter(amounts.values())), scope=scope)
        train.fit(model, X, y, epochs=epochs_per_step, lr=lr, schedule="constant", seed=seed + j, **kw)
        record(j, sum(amounts.values()) / len(amounts) if scope == "global" else amounts)
    train.fit(model, X, y, epochs=fine_tune_epochs, lr=lr, schedule="cosine", seed=seed + steps + 1, **kw)
    record(steps + 1, history[-1]["target"] if history else 0.0)
    return history


def rewind_(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Reset the weights to `state` (a state_dict of the unpruned model, e.g. θ₀), keeping the
    masks: w_orig ← θ₀, so w = θ₀ · mask. In place; returns the model."""
    check_module(model, "model", "rewind_")
    with torch.no_grad():
        for name, p in model.named_parameters():
            key = name[:-len("_orig")] if name.endswith("_orig") else name
            if key not in state:
                raise ValueError(message("state", "rewind_", "a state_dict with every parameter of "
                                          "model", f"no {key!r}"))
            p.copy_(state[key])
        for m in model.modules():                       # refresh w = w_orig · mask now
            if hasattr(m, "weight_mask"):
                m.weight = m.weight_orig * m.weight_mask
    return model


def lottery_ticket(make_model, X: torch.Tensor, y: torch.Tensor, X_test: torch.Tensor,
                   y_test: torch.Tensor, X_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None, rounds: int = 4, rate: float = 0.5, epochs: int = 10,
                   lr: float = 2e-3, seed: int = 0, reinit_seed: int = 1000,
                   fit_kwargs: dict | None = None) -> pd.DataFrame:
    """Iterative magnitude pruning with rewinding to θ₀, against random re-initialization.

    make_model(seed) → a fresh model. Round 0 trains the dense model; each round r = 1..rounds
    prunes `rate` of the remaining weights of every layer (so density (1 − rate)^r), rewinds to
    θ₀ and trains `epochs` epochs; the control trains the same mask from make_model(reinit_seed + r).
    fit_kwargs: more arguments for `train.fit`. Returns a DataFrame: round, density, ticket and
    reinit (test accuracy), and with X_val the learning curves ticket_curve, reinit_curve (validation
    accuracy after each epoch).
    """
    if not callable(make_model):
        raise TypeError(message("make_model", "lottery_ticket", "a callable make_model(seed) → model",
                                 type(make_model).__name__))
    check_xy(X, y, "lottery_ticket")
    check_xy(X_test, y_test, "lottery_ticket", "X_test", "y_test")
    rounds = check_int(rounds, "rounds", "lottery_ticket", low=1)
    rate = check_float(rate, "rate", "lottery_ticket", low=0, high=1, closed="neither")
    epochs = check_int(epochs, "epochs", "lottery_ticket", low=1)
    seed = check_int(seed, "seed", "lottery_ticket", low=0)
    model = check_module(make_model(seed), "make_model(seed)", "lottery_ticket")
    theta0 = copy.deepcopy(model.state_dict())
    fit = dict(fit_kwargs or {}, epochs=epochs, lr=lr, seed=seed, progress=False, X_val=X_val, y_val=y_val)
    curve = train.fit(model, X, y, **fit)["val_accuracy"]
    acc = train.accuracy(model, X_test, y_test)
    rows = [{"round": 0, "density": 1.0, "ticket": acc, "reinit": acc, "ticket_curve": curve,
             "reinit_curve": curve}]
    for r in range(1, rounds + 1):
        prune.magnitude_(model, 1 - (1 - rate) ** r)    # counts the already-pruned zeros
        rewind_(model, theta0)
        curve = train.fit(model, X, y, **fit)["val_accuracy"]
        control = make_model(reinit_seed + r)
        prune.apply_masks_(control, prune.masks(model))
        control_curve = train.fit(control, X, y, **fit)["val_accuracy"]
        rows.append({"round": r, "density": sparsity.density(model),
                     "ticket": train.accuracy(model, X_test, y_test),
                     "reinit": train.accuracy(control, X_test, y_test),
                     "ticket_curve": curve, "reinit_curve": control_curve})
    return pd.DataFrame(rows)


def sensitivity(model: nn.Module, X: torch.Tensor, y: torch.Tensor, amounts=(0.5, 0.7, 0.8, 0.9, 0.95),
                criterion: str = "magnitude") -> pd.DataFrame:
    """Accuracy on (X, y) with one layer pruned at a time (the others dense). `model` is unchanged.

    Returns a DataFrame with one row per layer and one column per amount (plus "dense")."""
    layers = prunable_layers(model, "model", "sensitivity")
    amounts = [check_float(a, "amounts", "sensitivity", low=0, high=1, closed="left") for a in amounts]
    dense = train.accuracy(model, X, y)
    rows = []
    scores = _score(model, X, y, criterion)
    for name, _ in layers:
        row = {"layer": name, "dense": dense}
        for a in amounts:
            m = prune.clone(model)
            prune.prune_by_scores_(m, {name: scores[name]}, a)
            row[a] = train.accuracy(m, X, y)
        rows.append(row)
    return pd.DataFrame(rows).set_index("layer")


def ratios_from_sensitivity(table: pd.DataFrame, max_drop: float = 0.01) -> dict[str, float]:
    """Per layer, the largest amount whose accuracy is within `max_drop` of dense (0.0 if none)."""
    if not isinstance(table, pd.DataFrame) or "dense" not in table:
        raise TypeError(message("table", "ratios_from_sensitivity", "a DataFrame from sensitivity()",
                                 type(table).__name__))
    max_drop = check_float(max_drop, "max_drop", "ratios_from_sensitivity", low=0, high=1)
    amounts = [c for c in table.columns if c != "dense"]
    return {layer: max([0.0] + [a for a in amounts if row["dense"] - row[a] <= max_drop])
            for layer, row in table.iterrows()}


def allocate(table: pd.DataFrame, sizes: dict[str, int], target: float, method: str = "greedy") -> dict[str, float]:
    """Per-layer amounts from a sensitivity table that remove at least `target` of all weights.

    The same multiple-choice knapsack as mixed precision's, solved by `mixed.greedy` or `mixed.dp`:
    choose one amount a_l per layer (0 or a column of the table) to

        minimize Σ_l (acc_dense,l − acc_l(a_l))   subject to   Σ_l (1 − a_l) n_l ≤ (1 − target) Σ_l n_l

    greedy: start every layer at 0 and step up the layer whose next amount costs the least accuracy
    per weight removed, Δacc_l / (Δa_l · n_l) (the larger saving on a tie); dp: the exact optimum
    of the summed costs. sizes: {layer: number of weights}. Raises ValueError if the table cannot
    reach the target."""
    if not isinstance(table, pd.DataFrame) or "dense" not in table:
        raise TypeError(message("table", "allocate", "a DataFrame from sensitivity()", type(table).__name__))
    target = check_float(target, "target", "allocate", low=0, high=1, closed="left")
    check_choice(method, "method", "allocate", ("greedy", "dp"))
    if not isinstance(sizes, dict) or set(sizes) != set(table.index):
        raise ValueError(message("sizes", "allocate", f"a dict with one entry per layer of the table "
                                 f"{list(table.index)}", sizes))
    grid = sorted(c for c in table.columns if c != "dense")
    layers = list(table.index)
    total = sum(sizes[layer] for layer in layers)
    if sum(max(grid + [0.0]) * sizes[layer] for layer in layers) < target * total:
        raise ValueError(message("target", "allocate", "reachable with the amounts of the table", target))
    costs = [{0.0: 0.0, **{a: float(table.loc[layer, "dense"] - table.loc[layer, a]) for a in grid if a > 0}}
             for layer in layers]
    kept = [{a: (1 - a) * sizes[layer] for a in c} for layer, c in zip(layers, costs)]
    budget = (1 - target) * total * (1 + 1e-12)          # float slack: "at least target" is inclusive
    choice = (mixed.greedy if method == "greedy" else mixed.dp)(costs, kept, budget)
    return dict(zip(layers, choice))
