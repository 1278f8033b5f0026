"""Exact k-th smallest value over many tensors, without concatenating them: the selection behind
magnitude pruning (`labkit.prune`) with `scope="global"`.

torch.nn.utils.prune's global pruning concatenates every layer's scores into one tensor (a copy of
all the weights) and calls `topk`. Here, for k = round(amount · n):

1. a random sample of the scores brackets the k-th smallest: [lo, hi] = its (q ∓ δ) quantiles,
   q = k / n, δ ≈ 6 standard errors of a sample quantile;
2. one pass over the tensors, chunk by chunk in reused buffers, counts the scores below lo and
   gathers the few inside [lo, hi];
3. `kthvalue` on that small set gives the exact answer t. If the bracket missed (rare), it widens
   and the pass repeats. The sample changes the speed, never the result.

Ties at t are pruned in tensor order, then flat index order.
"""
from __future__ import annotations

import math

import torch

from .validate import message, check_float, check_int, check_tensor


def n_to_prune(amount: float, n: int) -> int:
    """k = round(amount · n), Python's round (half to even), as torch.nn.utils.prune.

    amount ∈ [0, 1], n ≥ 0 values: k ∈ [0, n]."""
    amount = check_float(amount, "amount", "n_to_prune", low=0, high=1)
    n = check_int(n, "n", "n_to_prune", low=0)
    return round(amount * n)


def _tensors(scores, name: str, func: str) -> list[torch.Tensor]:
    if not isinstance(scores, (list, tuple)) or not all(isinstance(s, torch.Tensor) for s in scores):
        raise TypeError(message(name, func, "a list of tensors", type(scores).__name__))
    return list(scores)


def _chunks(s: torch.Tensor, size: int = 1 << 20):
    """Flat views of `s` (of a contiguous tensor: writes go through) of at most `size` elements."""
    flat = s.view(-1) if s.is_contiguous() else s.reshape(-1)
    for i in range(0, flat.numel(), size):
        yield flat[i:i + size]


class _Work:
    """Reused chunk-sized buffers: no allocation (and no page faults) per chunk, cache-sized."""

    def __init__(self, size: int = 1 << 20):
        self.size, self.bufs = size, {}

    def buf(self, key, like: torch.Tensor, dtype=None) -> torch.Tensor:
        dtype = dtype or like.dtype
        k = (key, dtype, like.device)
        if k not in self.bufs:
            self.bufs[k] = torch.empty(self.size, dtype=dtype, device=like.device)
        return self.bufs[k][:like.numel()]

    def values(self, c: torch.Tensor, absolute: bool) -> torch.Tensor:
        return torch.abs(c, out=self.buf("abs", c)) if absolute else c

    def cmp(self, op, v: torch.Tensor, x: float, key: str = "b1") -> torch.Tensor:
        return op(v, x, out=self.buf(key, v, torch.bool))


@torch.no_grad()
def kth_smallest(scores: list[torch.Tensor], k: int, seed: int = 0, sample: int = 1 << 16,
                 absolute: bool = False) -> tuple[float, int]:
    """(t, below): the k-th smallest (1-based) value over all `scores` (of |scores| if `absolute`)
    and the number of values < t. Exact; extra memory is a few chunks, not a copy of the scores.
    `sample` values drawn with `seed` only choose the bracket: they change the speed, not the result."""
    scores = _tensors(scores, "scores", "kth_smallest")
    n = sum(s.numel() for s in scores)
    if n == 0:
        raise ValueError(message("scores", "kth_smallest", "tensors holding at least one value",
                                  f"{len(scores)} empty tensors"))
    k = check_int(k, "k", "kth_smallest", low=1, high=n)
    f = torch.abs if absolute else (lambda c: c)
    gen = torch.Generator().manual_seed(seed)
    m = min(n, check_int(sample, "sample", "kth_smallest", low=1))
    smp = torch.cat([f(s.reshape(-1)[torch.randint(s.numel(), (max(1, math.ceil(m * s.numel() / n)),),
                                                   generator=gen).to(s.device)]).float()
                     for s in scores if s.numel()])
    q = k / n
    delta = 6 * math.sqrt(q * (1 - q) / len(smp)) + 2 / len(smp)   # ≈ 6 standard errors of a quantile
    rank = lambda x: min(len(smp), max(1, round(x * len(smp))))
    lo = smp.kthvalue(rank(q - delta)).values.item() if q - delta > 0 else -math.inf
    hi = smp.kthvalue(rank(q + delta)).values.item() if q + delta < 1 else math.inf
    work = _Work()
    while True:                       # one pass: count below the bracket, gather inside it
        below, inside = 0, []
        for s in scores:
            for c in _chunks(s):
                v = work.values(c, absolute)
                below += int(torch.count_nonzero(work.cmp(torch.lt, v, lo)))
                keep = work.cmp(torch.ge, v, lo).logical_and_(work.cmp(torch.le, v, hi, "b2"))
                inside.append(v[keep])
        inside = torch.cat(inside).float() if inside else torch.empty(0)
        if below < k <= below + inside.numel():
            t = inside.kthvalue(k - below).values
            return t.item(), below + int(torch.count_nonzero(inside < t))
        if hi == math.inf and k > below + inside.numel():   # what no bracket holds is NaN
            raise ValueError(message("scores", "kth_smallest", "tensors of comparable values (no NaN)",
                                      f"{n - below - inside.numel()} NaN of {n} values"))
        lo, hi = (-math.inf, lo) if k <= below else (hi, math.inf)   # rare: widen and retry


def _drop_chunk(work: _Work, v: torch.Tensor, t: float, ties: int) -> tuple[torch.Tensor, int]:
    """Drop v < t, and the first `ties` of v == t. → (drop mask, ties still to drop)."""
    drop = work.cmp(torch.lt, v, t)
    if ties > 0:
        eq = work.cmp(torch.eq, v, t, "b2")
        if bool(eq.any()):
            idx = eq.nonzero().squeeze(1)[:ties]
            drop[idx] = True
            ties -= idx.numel()
    return drop, ties


def _plan(values: list[torch.Tensor], amount: float, absolute: bool) -> tuple[float, int] | None:
    """(t, number of ties at t to prune) so that round(amount · n) values are pruned; None: none."""
    k = n_to_prune(amount, sum(v.numel() for v in values))
    if k == 0:
        return None
    t, below = kth_smallest(values, k, absolute=absolute)
    return t, k - below


@torch.no_grad()
def smallest_masks(scores: list[torch.Tensor], amount: float, absolute: bool = False) -> list[torch.Tensor]:
    """Keep-masks (bool) that prune the k = round(amount · Σn) smallest scores over all tensors
    (smallest |scores| if `absolute`). Ties at the threshold are pruned in order."""
    amount = check_float(amount, "amount", "smallest_masks", low=0, high=1, closed="left")
    if not isinstance(scores, (list, tuple)) or not scores:
        raise TypeError(message("scores", "smallest_masks", "a non-empty list of tensors", type(scores).__name__))
    for s in scores:
        check_tensor(s, "scores", "smallest_masks")
    plan = _plan(list(scores), amount, absolute)
    out = [torch.ones(s.shape, dtype=torch.bool, device=s.device) for s in scores]
    if plan is None:
        return out
    t, ties = plan
    work = _Work()
    for s, o in zip(scores, out):
        for c, oc in zip(_chunks(s), _chunks(o)):
            drop, ties = _drop_chunk(work, work.values(c, absolute), t, ties)
            oc.masked_fill_(drop, False)
    return out


@torch.no_grad()
def zero_smallest_(targets: list[torch.Tensor], scores: list[torch.Tensor], amount: float,
                   absolute: bool = False) -> None:
    """In place: set to 0 the entries of `targets` where `smallest_masks(scores, amount, absolute)`
    would be False (each target has its score's shape), chunk by chunk, with no mask in memory."""
    amount = check_float(amount, "amount", "zero_smallest_", low=0, high=1, closed="left")
    scores = _tensors(scores, "scores", "zero_smallest_")
    targets = _tensors(targets, "targets", "zero_smallest_")
    if [t.shape for t in targets] != [s.shape for s in scores]:
        raise ValueError(message("targets", "zero_smallest_", "one tensor per score, of its shape",
                                  [tuple(t.shape) for t in targets]))
    plan = _plan(list(scores), amount, absolute)
    if plan is None:
        return
    t, ties = plan
    work = _Work()
    for w, s in zip(targets, scores):
        if w.is_contiguous() and s.is_contiguous():
            for wc, sc in zip(_chunks(w), _chunks(s)):
                drop, ties = _drop_chunk(work, work.values(sc, absolute), t, ties)
                wc.masked_fill_(drop, 0)
        else:
            v = (s.abs() if absolute else s).reshape(-1)
            drop, ties = _drop_chunk(_Work(v.numel()), v, t, ties)
            w.masked_fill_(drop.view(w.shape), 0)
