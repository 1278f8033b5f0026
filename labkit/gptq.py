"""GPTQ: one-shot weight quantization with second-order error compensation.

Frantar, Ashkboos, Hoefler, Alistarh 2022, "GPTQ: Accurate Post-Training Quantization for
Generative Pre-trained Transformers", https://arxiv.org/abs/2210.17323.

A Linear layer y = x Wᵀ, W: (out, in), sees calibration inputs X: (n, in). Quantizing W to Ŵ
costs the layer-output error, one independent quadratic per row w of W:

    ‖X Wᵀ − X Ŵᵀ‖²_F = Σ_rows (w − ŵ) H (w − ŵ)ᵀ,        H = XᵀX   (in, in)

(the paper writes H = 2XXᵀ; a constant factor changes nothing below). GPTQ quantizes the columns
(input channels) one at a time, in the same order for every row (Optimal Brain Quantization with
a fixed order). After rounding column j to q_j it spreads the error over the columns not yet
quantized, the optimal update for a quadratic with those columns free (paper eq. 2–3):

    δ = (w_j − q_j) / [H⁻¹]_jj,        w_{j+1:} ← w_{j+1:} − δ · [H⁻¹]_{j, j+1:}

then drops column j from H⁻¹. The paper's three implementation steps, all here:
  * H⁻¹'s successive reductions are the rows of U, the upper Cholesky factor of H⁻¹ = UᵀU
    (step 3): δ = (w_j − q_j) / U_jj and w_{j+1:} −= δ · U_{j, j+1:};
  * lazy batch updates (step 2): the updates stay inside a block of `block_size` columns and
    reach the columns to its right once per block, as one matrix product;
  * damping: H + λI with λ = percdamp · mean(diag H); a dead input (H_jj = 0: never active)
    gets H_jj = 1 and weight 0.
Options as in the reference code (IST-DASLab/gptq, `fasterquant`): `act_order` quantizes the
columns in order of decreasing H_jj (the most active inputs first, while the most freedom is
left); with `group_size` g, a group's (s, z) are found when its first column comes up, from the
weights as updated so far (like the reference, from W as it stood at the start of the current
block: updates made inside the block do not reach them). With act_order the groups are g
consecutive columns *in that order* (the reference's default; a kernel then needs the g_idx
map). The grid is labkit.quantize's `group_qparams` ("affine", "symmetric" = the reference's
sym=True, "restricted").
"""
from __future__ import annotations

import torch

from .quantize import GROUP_SCHEMES, group_qparams, group_range, groupwise
from .validate import check_bits, check_bool, check_choice, check_finite, check_float, check_int, check_tensor, message


def _check_pair(W, H, func: str):
    check_tensor(W, "W", func)
    if W.ndim != 2 or W.numel() == 0:
        raise ValueError(message("W", func, "a non-empty 2-D weight (out, in)", f"shape {tuple(W.shape)}"))
    check_finite(W, "W", func)
    check_tensor(H, "H", func)
    n = W.shape[1]
    if tuple(H.shape) != (n, n):
        raise ValueError(message("H", func, f"XᵀX of shape (in, in) = ({n}, {n})", f"shape {tuple(H.shape)}"))
    check_finite(H, "H", func)
    if bool((torch.diagonal(H) < 0).any()):
        raise ValueError(message("H", func, "positive semi-definite (XᵀX)", "a negative diagonal entry"))


def layer_error(W: torch.Tensor, W_hat: torch.Tensor, H: torch.Tensor) -> float:
    """‖X Wᵀ − X Ŵᵀ‖²_F computed from H = XᵀX alone: Σ (ΔW H) ⊙ ΔW, ΔW = W − Ŵ (float64)."""
    _check_pair(W, H, "layer_error")
    check_tensor(W_hat, "W_hat", "layer_error")
    if W_hat.shape != W.shape:
        raise ValueError(message("W_hat", "layer_error", f"of W's shape {tuple(W.shape)}", f"shape {tuple(W_hat.shape)}"))
    D = (W.detach().double() - W_hat.detach().double())
    return float(((D @ H.detach().double()) * D).sum())


def quantize_weight(W: torch.Tensor, H: torch.Tensor, bits: int = 4, group_size: int | None = 128,
                    scheme: str = "affine", percdamp: float = 0.01, block_size: int = 128,
                    act_order: bool = False) -> torch.Tensor:
    """GPTQ → the dequantized weight Ŵ (a new tensor of W's shape and dtype; W, H unchanged).

    W: (out, in) weight of a Linear; H: (in, in) = XᵀX of its calibration inputs X (n, in)
    (any positive multiple of it gives the same Ŵ). group_size=None or −1: one (s, z) per row for
    the whole row, found before the first column. Computed in float64.
    """
    _check_pair(W, H, "quantize_weight")
    bits = check_bits(bits, "bits", "quantize_weight", low=2, high=16)
    n = W.shape[1]
    g = None if group_size is None or group_size == -1 else check_int(group_size, "group_size", "quantize_weight", low=1)
    check_choice(scheme, "scheme", "quantize_weight", GROUP_SCHEMES)
    percdamp = check_float(percdamp, "percdamp", "quantize_weight", low=0, high=10)
    B = check_int(block_size, "block_size", "quantize_weight", low=1)
    check_bool(act_order, "act_order", "quantize_weight")
    q_min, q_max = group_range(bits, scheme)

    W_ = W.detach().double().clone()
    H_ = H.detach().double()
    H_ = (H_ + H_.T) / 2                                   # symmetric, as XᵀX is (a new tensor)
    dead = torch.diagonal(H_) == 0
    H_[dead, dead] = 1.0
    W_[:, dead] = 0.0
    if act_order:
        perm = torch.argsort(torch.diagonal(H_), descending=True)
        W_, H_ = W_[:, perm], H_[perm][:, perm]
    H_ += percdamp * torch.diagonal(H_).mean() * torch.eye(n, dtype=H_.dtype)
    try:
        U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H_)), upper=True)
    except RuntimeError:                                   # torch.linalg.LinAlgError
        raise ValueError(message("H", "quantize_weight", "positive definite after damping (raise percdamp)",
                                 "a matrix whose Cholesky factorization fails")) from None
    if g is None:
        s, z = group_qparams(W_, bits, scheme)
    Q = torch.zeros_like(W_)
    for i1 in range(0, n, B):                              # lazy batch: a block of B columns
        i2 = min(i1 + B, n)
        W1 = W_[:, i1:i2].clone()
        E1 = torch.zeros_like(W1)
        U1 = U[i1:i2, i1:i2]
        for i in range(i2 - i1):
            j = i1 + i
            if g is not None and j % g == 0:               # a new group: its (s, z) from W_ as it stands
                s, z = group_qparams(W_[:, j:j + g], bits, scheme)
            w = W1[:, i]
            q = (torch.clamp(torch.round(w[:, None] * (1.0 / s)) + z, q_min, q_max) - z).mul_(s)[:, 0]
            Q[:, j] = q
            delta = (w - q) / U1[i, i]                     # δ = (w_j − q_j) / U_jj
            W1[:, i:] -= delta[:, None] * U1[i, i:][None, :]
            E1[:, i] = delta
        W_[:, i2:] -= E1 @ U[i1:i2, i2:]                   # the block's updates, at once
    if act_order:
        Q = Q[:, torch.argsort(perm)]
    return Q.to(W.dtype)


def compare_rtn(W: torch.Tensor, H: torch.Tensor, bits: int = 4, group_size: int | None = 128,
                scheme: str = "affine", act_order: bool = False) -> dict:
    """{"rtn": e, "gptq": e}: the layer-output errors ‖XWᵀ − XŴᵀ‖² of round-to-nearest
    (labkit.quantize.groupwise) and of GPTQ on the same grid, the comparison GPTQ is judged by."""
    _check_pair(W, H, "compare_rtn")
    rtn = groupwise(W, bits, group_size, scheme)
    return {"rtn": layer_error(W, rtn, H),
            "gptq": layer_error(W, quantize_weight(W, H, bits, group_size, scheme, act_order=act_order), H)}
