"""One-shot pruning of an LLM's Linears from calibration data: magnitude, Wanda, SparseGPT; N:M.

A Linear Y = X Wᵀ, W (out, in), X (N, in) the calibration tokens reaching it. Notebooks 01–03
prune and retrain; an LLM is pruned once, layer by layer, from a few hundred calibration
sequences, and the criterion decides how much of the model survives:

    magnitude  S_ij = |W_ij|                       compared over the layer ("layer")
    Wanda      S_ij = |W_ij| · ‖X_j‖₂              compared within each output row ("row")
               (Sun et al. 2023, https://arxiv.org/abs/2306.11695; ‖X_j‖₂ over the N tokens)
    SparseGPT  OBS-style: prune w_ij with the least w_ij² / [H⁻¹]_jj and update the rest of the row
               (Frantar & Alistarh 2023, https://arxiv.org/abs/2301.00774; labkit.sparsegpt)

A mask is a bool tensor of W's shape, True = kept. `amount` is the fraction pruned: the
k = round(amount · n) smallest scores of each layer, or of each row, are pruned (ties in index
order; the Wanda reference rounds k down); `sparsity` is the zero fraction measured afterwards.

N:M (2:4, 4:8): in every group of m consecutive weights along the input dimension at most n are
non-zero; NVIDIA's sparse tensor cores run 2:4. `nm_mask` keeps the n largest scores of each group.

Bytes of a pruned W (out, in) with b-bit values (`compressed_bytes`):

    dense   out · in · b
    N:M     (n/m) · out · in · (b + ⌈log₂ m⌉)        kept values + an index per kept value
            (2:4: 2-bit indices, NVIDIA's metadata; fp16 2:4 = 56.25 % of dense)
    CSR     nnz · (b + i) + (out + 1) · i             values, column indices, row pointers, i-bit
                                                      indices (i = 32: scipy's int32; torch uses int64)
all in bits, rounded up to whole bytes.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .selection import smallest_masks
from .sparsegpt import hessian, sparsegpt
from .validate import check_choice, check_finite, check_float, check_int, check_tensor, message

CRITERIA = ("magnitude", "wanda", "sparsegpt")
SCOPES = ("layer", "row")


def _weight(W, func: str, name: str = "W") -> torch.Tensor:
    check_finite(W, name, func)
    if W.ndim != 2 or not W.numel():
        raise ValueError(message(name, func, "a non-empty 2-D tensor (out, in)", f"shape {tuple(W.shape)}"))
    return W


def _nm(n, m, func: str) -> tuple[int, int]:
    m = check_int(m, "m", func, low=1, high=1024)
    return check_int(n, "n", func, low=1, high=m), m


def _groups(t: torch.Tensor, m: int, name: str, func: str) -> torch.Tensor:
    """t (..., in) → (..., in / m, m): the groups of m along the input dimension."""
    if t.ndim < 1 or not t.numel() or t.shape[-1] % m:
        raise ValueError(message(name, func, f"a non-empty tensor whose last dimension is a multiple of m = {m}",
                                 f"shape {tuple(t.shape)}"))
    return t.reshape(*t.shape[:-1], t.shape[-1] // m, m)


# ----------------------------------------------------------------------------- scores
def magnitude_scores(W: torch.Tensor) -> torch.Tensor:
    """S = |W| (out, in)."""
    return _weight(W, "magnitude_scores").detach().abs()


def wanda_scores(W: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """S_ij = |W_ij| · ‖X_j‖₂ (out, in). X (..., in): the calibration inputs of the layer, every
    leading dimension a token; a 1-D X (in,) is one token, so the vector ‖X_j‖₂ itself also works."""
    W = _weight(W, "wanda_scores")
    check_finite(X, "X", "wanda_scores")
    if X.ndim < 1 or not X.numel() or X.shape[-1] != W.shape[1]:
        raise ValueError(message("X", "wanda_scores", f"a non-empty tensor (..., {W.shape[1]}) (in = W's columns)",
                                 f"shape {tuple(X.shape)}"))
    norms = X.detach().reshape(-1, X.shape[-1]).double().pow(2).sum(0).sqrt()    # ‖X_j‖₂ (in,)
    return (W.detach().abs().double() * norms).to(W.dtype)


# ----------------------------------------------------------------------------- masks
def unstructured_mask(scores: torch.Tensor, amount: float, scope: str = "layer") -> torch.Tensor:
    """Keep-mask pruning the round(amount · n) smallest scores of the layer ("layer") or the
    round(amount · in) smallest of each output row ("row"); scores (out, in)."""
    scores = _weight(scores, "unstructured_mask", "scores")
    amount = check_float(amount, "amount", "unstructured_mask", low=0, high=1, closed="left")
    check_choice(scope, "scope", "unstructured_mask", SCOPES)
    if scope == "layer":
        return smallest_masks([scores.detach()], amount)[0]
    k = round(amount * scores.shape[1])
    keep = torch.ones(scores.shape, dtype=torch.bool, device=scores.device)
    return keep.scatter_(1, scores.detach().argsort(dim=1, stable=True)[:, :k], False)


def nm_mask(scores: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """Keep-mask with the n largest scores of every m consecutive along the last (input) dimension
    (ties: the lower index kept). scores (..., in), in a multiple of m."""
    check_finite(scores, "scores", "nm_mask")
    n, m = _nm(n, m, "nm_mask")
    g = _groups(scores.detach(), m, "scores", "nm_mask")
    order = g.argsort(dim=-1, descending=True, stable=True)[..., :n]
    return torch.zeros(g.shape, dtype=torch.bool, device=g.device).scatter_(-1, order, True).reshape(scores.shape)


def is_nm(mask: torch.Tensor, n: int = 2, m: int = 4) -> bool:
    """True if every group of m consecutive entries along the last dimension holds at most n
    non-zeros (mask: a keep-mask, or a pruned weight)."""
    check_tensor(mask, "mask", "is_nm", floating=False)
    if mask.is_floating_point():
        check_finite(mask, "mask", "is_nm")
    n, m = _nm(n, m, "is_nm")
    return bool(((_groups(mask != 0, m, "mask", "is_nm")).sum(-1) <= n).all())


# ----------------------------------------------------------------------------- pruning a layer
def prune_weight(W: torch.Tensor, criterion: str = "magnitude", amount: float = 0.5,
                 nm: tuple[int, int] | None = None, X: torch.Tensor | None = None,
                 H: torch.Tensor | None = None, scope: str | None = None, **sparsegpt_options):
    """One-shot pruning of one weight W (out, in) → (Ŵ, keep-mask). `amount` unstructured, or
    nm=(n, m) for N:M. Wanda needs X (its inputs), SparseGPT H = XᵀX (`sparsegpt.hessian(X)`) or X.
    scope: "layer" (magnitude's default) or "row" (Wanda's); SparseGPT chooses per block of columns.
    sparsegpt_options: block_size, damp, quantize (passed to `sparsegpt.sparsegpt`)."""
    W = _weight(W, "prune_weight")
    check_choice(criterion, "criterion", "prune_weight", CRITERIA)
    amount = check_float(amount, "amount", "prune_weight", low=0, high=1, closed="left")
    if nm is not None and (not isinstance(nm, tuple) or len(nm) != 2):
        raise TypeError(message("nm", "prune_weight", "None or a tuple (n, m)", nm))
    if criterion == "sparsegpt":
        if H is None and X is None:
            raise ValueError(message("H", "prune_weight", "given (or X) for 'sparsegpt'", None))
        return sparsegpt(W, hessian(X) if H is None else H, amount, nm, **sparsegpt_options)
    if sparsegpt_options:
        raise TypeError(message("sparsegpt_options", "prune_weight", "empty unless criterion is 'sparsegpt'",
                                sorted(sparsegpt_options)))
    if criterion == "wanda":
        if X is None:
            raise ValueError(message("X", "prune_weight", "the layer's calibration inputs for 'wanda'", None))
        scores = wanda_scores(W, X)
    else:
        scores = magnitude_scores(W)
    if nm is not None:
        mask = nm_mask(scores, *nm)
    else:
        scope = check_choice(scope or ("row" if criterion == "wanda" else "layer"), "scope", "prune_weight", SCOPES)
        mask = unstructured_mask(scores, amount, scope)
    return W.detach() * mask, mask


@torch.no_grad()
def prune_linear_(layer: nn.Linear, criterion: str = "magnitude", amount: float = 0.5,
                  nm: tuple[int, int] | None = None, X: torch.Tensor | None = None,
                  H: torch.Tensor | None = None, **options) -> torch.Tensor:
    """In place: layer.weight ← Ŵ of `prune_weight` (same arguments) → the keep-mask."""
    if not isinstance(layer, nn.Linear):
        raise TypeError(message("layer", "prune_linear_", "an nn.Linear", type(layer).__name__))
    W_hat, mask = prune_weight(layer.weight, criterion, amount, nm, X, H, **options)
    layer.weight.copy_(W_hat)
    return mask


def output_error(W: torch.Tensor, W_hat: torch.Tensor, X: torch.Tensor) -> float:
    """‖X Wᵀ − X Ŵᵀ‖²_F, the layer-output error that SparseGPT minimizes; X (..., in)."""
    W = _weight(W, "output_error")
    W_hat = _weight(W_hat, "output_error", "W_hat")
    if W_hat.shape != W.shape:
        raise ValueError(message("W_hat", "output_error", f"of W's shape {tuple(W.shape)}", f"shape {tuple(W_hat.shape)}"))
    check_finite(X, "X", "output_error")
    if X.ndim < 1 or not X.numel() or X.shape[-1] != W.shape[1]:
        raise ValueError(message("X", "output_error", f"a non-empty tensor (..., {W.shape[1]})", f"shape {tuple(X.shape)}"))
    D = (W.detach() - W_hat.detach()).double()
    return float((X.detach().reshape(-1, X.shape[-1]).double() @ D.T).pow(2).sum())


# ----------------------------------------------------------------------------- bytes
def _bits_arg(value_bits, index_bits, func):
    return (check_int(value_bits, "value_bits", func, low=1, high=64),
            check_int(index_bits, "index_bits", func, low=1, high=64))


def dense_bytes(W: torch.Tensor, value_bits: int = 16) -> int:
    """⌈out · in · value_bits / 8⌉."""
    W = _weight(W, "dense_bytes")
    value_bits, _ = _bits_arg(value_bits, 1, "dense_bytes")
    return math.ceil(W.numel() * value_bits / 8)


def nm_bytes(W: torch.Tensor, n: int = 2, m: int = 4, value_bits: int = 16) -> int:
    """⌈(n/m) · out · in · (value_bits + ⌈log₂ m⌉) / 8⌉: n kept slots per group, each with its index
    in the group (2 bits for 2:4). W must be N:M (ValueError otherwise)."""
    W = _weight(W, "nm_bytes")
    n, m = _nm(n, m, "nm_bytes")
    value_bits, _ = _bits_arg(value_bits, 1, "nm_bytes")
    if not is_nm(W, n, m):
        raise ValueError(message("W", "nm_bytes", f"{n}:{m} sparse (at most {n} non-zeros in every {m})", "W"))
    return math.ceil(W.numel() // m * n * (value_bits + math.ceil(math.log2(m))) / 8)


def csr_bytes(W: torch.Tensor, value_bits: int = 16, index_bits: int = 32) -> int:
    """⌈(nnz · (value_bits + index_bits) + (out + 1) · index_bits) / 8⌉: the values, their column
    indices and the row pointers of compressed sparse rows."""
    W = _weight(W, "csr_bytes")
    value_bits, index_bits = _bits_arg(value_bits, index_bits, "csr_bytes")
    nnz = int((W != 0).sum())
    return math.ceil((nnz * (value_bits + index_bits) + (W.shape[0] + 1) * index_bits) / 8)


def compressed_bytes(W: torch.Tensor, n: int = 2, m: int = 4, value_bits: int = 16,
                     index_bits: int = 32) -> dict[str, int | None]:
    """{"dense", "nm", "csr"}: the bytes of W in each format ("nm": None if W is not N:M)."""
    W = _weight(W, "compressed_bytes")
    n, m = _nm(n, m, "compressed_bytes")
    fits = W.shape[1] % m == 0 and is_nm(W, n, m)
    return {"dense": dense_bytes(W, value_bits),
            "nm": nm_bytes(W, n, m, value_bits) if fits else None,
            "csr": csr_bytes(W, value_bits, index_bits)}
