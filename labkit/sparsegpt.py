"""SparseGPT (Frantar & Alistarh 2023, https://arxiv.org/abs/2301.00774): prune a layer and fix the rest.

For one Linear W (out, in) with calibration inputs X (N, in), SparseGPT minimizes the layer-output
error ‖X Wᵀ − X Ŵᵀ‖² under a sparsity mask, row by row, with the Hessian H = XᵀX (in, in) shared
by all rows. Optimal Brain Surgeon: removing w_j (setting it to q_j, 0 when pruned) costs
(w_j − q_j)² / [H⁻¹]_jj and is best compensated by

    δw = −(w_j − q_j) / [H⁻¹]_jj · H⁻¹_{j,:}                 (the remaining weights of the row move)

Columns are processed left to right, so after column j the Hessian of the columns still free is
that of the remaining inputs; the rows of the upper Cholesky factor U of H⁻¹ (H⁻¹ = UᵀU) give every
one of these successive inverses at once: column j uses d_j = U_jj and U_{j, j:}. H is dampened,
H + λ·mean(diag H)·I (λ = `damp`, 1 %), and inputs that are always 0 (H_jj = 0) get H_jj = 1 and
a zero weight. The mask is chosen adaptively per block of B = 128 columns, from the weights as
updated so far: in each block the round(amount · out · B) weights of least w² / d² are pruned
(unstructured), or, for N:M, the m − n of least w² / d² in each group of m as the loop reaches it.
A `quantize(column, j)` hook (e.g. `row_quantizer(W, 4)`) rounds each kept column before its
error is spread, which gives the joint "50 % + 4-bit" of the paper.
"""
from __future__ import annotations

import torch

from . import quantize as Q
from .validate import check_bits, check_finite, check_float, check_int, message


def hessian(X: torch.Tensor) -> torch.Tensor:
    """H = XᵀX (in, in) in float64, X (..., in): every leading dimension a token (sum H's of batches)."""
    check_finite(X, "X", "hessian")
    if X.ndim < 1 or not X.numel():
        raise ValueError(message("X", "hessian", "a non-empty tensor (..., in)", f"shape {tuple(X.shape)}"))
    X = X.detach().reshape(-1, X.shape[-1]).double()
    return X.T @ X


def row_quantizer(W: torch.Tensor, bits: int = 4):
    """quantize(column, j): affine min-max RTN on the per-row grid of W (out, in), as the paper's
    joint quantization (one scale and zero point per output row, from the dense W; 0 stays 0)."""
    check_finite(W, "W", "row_quantizer")
    bits = check_bits(bits, "bits", "row_quantizer", low=2, high=8)
    if W.ndim != 2 or not W.numel():
        raise ValueError(message("W", "row_quantizer", "a non-empty 2-D tensor (out, in)", f"shape {tuple(W.shape)}"))
    scale, zero = Q.qparams(*Q.observe(W.detach().float(), axis=0), bits=bits, scheme="affine")

    def quantize(column, j):
        return Q.fake_quantize(column.float(), bits, "affine", axis=0, scale=scale, zero_point=zero).to(column)

    return quantize


def _check(W, H, amount, nm, block_size, damp, quantize):
    check_finite(W, "W", "sparsegpt")
    if W.ndim != 2 or not W.numel():
        raise ValueError(message("W", "sparsegpt", "a non-empty 2-D tensor (out, in)", f"shape {tuple(W.shape)}"))
    check_finite(H, "H", "sparsegpt")
    if H.shape != (W.shape[1], W.shape[1]):
        raise ValueError(message("H", "sparsegpt", f"XᵀX of shape ({W.shape[1]}, {W.shape[1]})", f"shape {tuple(H.shape)}"))
    amount = check_float(amount, "amount", "sparsegpt", low=0, high=1, closed="left")
    block_size = check_int(block_size, "block_size", "sparsegpt", low=1)
    damp = check_float(damp, "damp", "sparsegpt", low=0, closed="neither")
    if nm is not None:
        if not isinstance(nm, tuple) or len(nm) != 2:
            raise TypeError(message("nm", "sparsegpt", "None or a tuple (n, m)", nm))
        m = check_int(nm[1], "m", "sparsegpt", low=1, high=1024)
        n = check_int(nm[0], "n", "sparsegpt", low=1, high=m)
        if W.shape[1] % m or block_size % m:
            raise ValueError(message("nm", "sparsegpt", f"an m dividing in = {W.shape[1]} and block_size = {block_size}", nm))
        nm = (n, m)
    if quantize is not None and not callable(quantize):
        raise TypeError(message("quantize", "sparsegpt", "None or a callable quantize(column, j)", type(quantize).__name__))
    return amount, nm, block_size, damp


@torch.no_grad()
def sparsegpt(W: torch.Tensor, H: torch.Tensor, amount: float = 0.5, nm: tuple[int, int] | None = None,
              block_size: int = 128, damp: float = 0.01, quantize=None):
    """SparseGPT of one weight W (out, in) with H = XᵀX (in, in) → (Ŵ, keep-mask).

    amount: the fraction pruned in each block (unstructured), or nm=(n, m): n kept of every m.
    quantize: None, or quantize(column (out,), j) → the rounded column (the joint quantization)."""
    amount, nm, B, damp = _check(W, H, amount, nm, block_size, damp, quantize)
    dtype, (rows, cols) = W.dtype, W.shape
    W = W.detach().clone().float()
    H = H.detach().to(W.device, torch.float64, copy=True)
    dead = H.diagonal() == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H += damp * H.diagonal().mean() * torch.eye(cols, dtype=H.dtype, device=H.device)
    try:
        L = torch.linalg.cholesky(H)
    except torch.linalg.LinAlgError:
        raise ValueError(message("H", "sparsegpt", "positive semi-definite (XᵀX)", "not positive definite")) from None
    U = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True).float()    # H⁻¹ = UᵀU
    keep = torch.ones(rows, cols, dtype=torch.bool, device=W.device)
    for i1 in range(0, cols, B):
        i2 = min(i1 + B, cols)
        W1, U1 = W[:, i1:i2].clone(), U[i1:i2, i1:i2]
        d = U1.diagonal()
        E = torch.zeros_like(W1)
        pruned = torch.zeros_like(W1, dtype=torch.bool)
        if nm is None:                                      # the block's mask, chosen all at once
            k = round(amount * W1.numel())
            saliency = (W1 ** 2 / d ** 2).flatten()
            pruned.view(-1)[saliency.argsort(stable=True)[:k]] = True
        for i in range(i2 - i1):
            if nm is not None and i % nm[1] == 0:           # the next group's mask, as reached
                n, m = nm
                saliency = W1[:, i:i + m] ** 2 / d[i:i + m] ** 2
                pruned[:, i:i + m].scatter_(1, saliency.topk(m - n, dim=1, largest=False).indices, True)
            w = W1[:, i]
            q = w.masked_fill(pruned[:, i], 0.0)
            if quantize is not None:
                q = quantize(q, i1 + i).masked_fill(pruned[:, i], 0.0)
            err = (w - q) / d[i]
            W1[:, i:] -= err.unsqueeze(1) * U1[i, i:].unsqueeze(0)   # OBS update of the row's rest
            W1[:, i] = q
            E[:, i] = err
        W[:, i1:i2] = W1
        W[:, i2:] -= E @ U[i1:i2, i2:]                      # the block's error onto the later columns
        keep[:, i1:i2] = ~pruned
    return W.to(dtype), keep
