"""labkit.llm_prune and labkit.sparsegpt: Wanda's score against the formula, masks exactly N:M,
SparseGPT's layer-output error below magnitude's and Wanda's, SparseGPT with H = I is magnitude,
the joint quantization hook, and bytes by hand."""
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from labkit import llm_prune as lp
from labkit import sparsegpt as sg


def correlated_layer(seed, out=32, d=64, n=512):
    """W (out, d) and inputs X (n, d) whose channels are correlated and of unequal scale."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d, d, generator=g) / d ** 0.5 + torch.eye(d)
    Z = torch.randn(n, d // 4, generator=g) @ torch.randn(d // 4, d, generator=g)     # low-rank part
    X = (Z + 0.3 * torch.randn(n, d, generator=g)) @ A * torch.linspace(0.2, 3, d)
    return torch.randn(out, d, generator=g), X


# ------------------------------------------------------------------ scores
def test_wanda_score_is_the_formula_by_hand():
    W = torch.tensor([[1.0, -2.0], [-3.0, 0.5]])
    X = torch.tensor([[3.0, 0.0], [4.0, 1.0]])                  # ‖X_0‖ = 5, ‖X_1‖ = 1
    assert lp.wanda_scores(W, X).tolist() == [[5.0, 2.0], [15.0, 0.5]]
    assert lp.wanda_scores(W, torch.tensor([5.0, 1.0])).tolist() == [[5.0, 2.0], [15.0, 0.5]]
    X3 = torch.randn(2, 7, 2)                                   # (batch, tokens, in): all tokens count
    assert torch.allclose(lp.wanda_scores(W, X3), W.abs() * X3.reshape(14, 2).norm(dim=0))
    # per row, the 2 weights compare differently from magnitude: row 0 keeps column 0 (5 > 2)
    assert lp.prune_weight(W, "wanda", 0.5, X=X)[1].tolist() == [[True, False], [True, False]]
    assert lp.prune_weight(W, "magnitude", 0.5)[1].tolist() == [[False, True], [True, False]]


# ------------------------------------------------------------------ masks
def test_unstructured_masks_per_layer_and_per_row():
    S = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]])
    assert lp.unstructured_mask(S, 0.5).tolist() == [[False] * 4, [True] * 4]
    assert lp.unstructured_mask(S, 0.5, "row").tolist() == [[False, False, True, True]] * 2
    W = torch.randn(64, 128)
    mask = lp.unstructured_mask(W.abs(), 0.7)
    assert int((~mask).sum()) == round(0.7 * W.numel())
    mask = lp.unstructured_mask(W.abs(), 0.7, "row")
    assert ((~mask).sum(1) == round(0.7 * 128)).all()
    ref = torch_prune.l1_unstructured(nn.Linear(128, 64), "weight", 0.7)   # torch's per-layer mask
    assert torch.equal(lp.unstructured_mask(ref.weight_orig.detach().abs(), 0.7), ref.weight_mask.bool())


@pytest.mark.parametrize("n,m", [(2, 4), (4, 8), (1, 4)])
def test_nm_mask_is_exactly_n_of_every_m_and_the_largest(n, m):
    S = torch.rand(16, 64)
    mask = lp.nm_mask(S, n, m)
    groups = mask.reshape(16, 64 // m, m)
    assert (groups.sum(-1) == n).all() and lp.is_nm(mask, n, m)
    g = S.reshape(16, 64 // m, m)
    kept_min = g.masked_fill(~groups, math.inf).amin(-1)
    dropped_max = g.masked_fill(groups, -math.inf).amax(-1)
    assert (kept_min > dropped_max).all()


def test_is_nm_by_hand():
    assert lp.is_nm(torch.tensor([[1, 0, 0, 1, 0, 0, 0, 0]]))               # fewer than 2 is fine
    assert not lp.is_nm(torch.tensor([[1, 1, 1, 0, 1, 0, 0, 1]]))
    assert lp.is_nm(torch.tensor([[1.0, 0, 2, 0]]), 2, 4) and not lp.is_nm(torch.tensor([[1.0, 0, 2, 3]]))
    with pytest.raises(ValueError, match="multiple of m = 4"):
        lp.is_nm(torch.ones(2, 6, dtype=torch.bool))


# ------------------------------------------------------------------ SparseGPT
def test_sparsegpt_with_identity_hessian_is_magnitude():
    W = torch.randn(16, 64)
    H = torch.eye(64)
    W_hat, mask = sg.sparsegpt(W, H, 0.5, block_size=128)       # one block: one layer-wide choice
    assert torch.equal(mask, lp.unstructured_mask(W.abs(), 0.5))
    assert torch.allclose(W_hat, W * mask, atol=1e-6)
    W_hat, mask = sg.sparsegpt(W, H, nm=(2, 4), block_size=32)
    assert torch.equal(mask, lp.nm_mask(W.abs(), 2, 4))
    assert torch.allclose(W_hat, W * mask, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparsegpt_error_below_magnitude_and_wanda_on_correlated_inputs(seed):
    W, X = correlated_layer(seed)
    H = sg.hessian(X)
    for pattern in ({"amount": 0.5}, {"nm": (2, 4)}):
        err = {c: lp.output_error(W, lp.prune_weight(W, c, X=X, H=H, **pattern)[0], X)
               for c in ("magnitude", "wanda", "sparsegpt")}
        assert err["sparsegpt"] < 0.8 * min(err["magnitude"], err["wanda"]), (pattern, err)
        W_hat, mask = lp.prune_weight(W, "sparsegpt", H=H, **pattern)
        assert torch.equal(W_hat != 0, mask)                    # exact zeros where pruned, weights moved elsewhere
        assert not torch.allclose(W_hat[mask], W[mask])


def test_sparsegpt_masks_are_exactly_the_pattern_and_blocks_are_adaptive():
    W, X = correlated_layer(3, d=256)
    H = sg.hessian(X)
    _, mask = sg.sparsegpt(W, H, 0.6, block_size=128)
    for i1 in (0, 128):                                         # 60 % of every block, unequal across rows
        assert int((~mask[:, i1:i1 + 128]).sum()) == round(0.6 * 32 * 128)
    assert len(set((~mask).sum(1).tolist())) > 1
    _, mask = sg.sparsegpt(W, H, nm=(4, 8))
    assert lp.is_nm(mask, 4, 8) and int(mask.sum()) == W.numel() // 2


def test_joint_quantization_puts_kept_weights_on_the_row_grid():
    W, X = correlated_layer(4)
    quantize = sg.row_quantizer(W, bits=4)
    W_hat, mask = sg.sparsegpt(W, sg.hessian(X), 0.5, quantize=quantize)
    assert int((~mask).sum()) == W.numel() // 2 and (W_hat[~mask] == 0).all()   # (a kept w may round to 0)
    lo = torch.minimum(W.amin(1), torch.zeros(()))
    scale = (torch.maximum(W.amax(1), torch.zeros(())) - lo) / 15
    steps = W_hat / scale[:, None]                              # (q − z)·s, z an integer: multiples of s
    assert torch.allclose(steps, steps.round(), atol=1e-3)
    assert torch.unique(W_hat[0]).numel() <= 16
    dense_rtn = torch.stack([quantize(W[:, j], j) for j in range(W.shape[1])], 1) * mask
    assert lp.output_error(W, W_hat, X) < lp.output_error(W, dense_rtn, X)


def test_dead_inputs_are_pruned_for_free():
    W, X = correlated_layer(5)
    X[:, :8] = 0
    W_hat, mask = sg.sparsegpt(W, sg.hessian(X), 0.5)
    assert (W_hat[:, :8] == 0).all()


def test_prune_linear_in_place_and_the_hessian():
    layer = nn.Linear(8, 4)
    X = torch.randn(10, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(sg.hessian(X), X.double().T @ X.double(), rtol=0, atol=1e-12)   # XᵀX in float64
    mask = lp.prune_linear_(layer, "wanda", nm=(2, 4), X=X)
    assert torch.equal(layer.weight != 0, mask) and lp.is_nm(layer.weight)


# ------------------------------------------------------------------ bytes
def test_bytes_by_hand():
    W = torch.tensor([[1.0, 0, 2, 0, 0, 0, 3, 4],
                      [0, 5, 0, 6, 7, 0, 0, 0]])               # 2:4, nnz 7
    assert lp.dense_bytes(W) == 2 * 8 * 2                      # 32 fp16 bytes
    # 2:4: 8 kept slots × (16 + 2) bits = 144 bits = 18 bytes
    assert lp.nm_bytes(W) == 18
    # 4:8: 4 kept per 8 → 8 slots × (16 + 3) = 152 bits = 19 bytes
    assert lp.nm_bytes(W, 4, 8) == 19
    # CSR, int32 indices: 7 × (16 + 32) + 3 × 32 = 432 bits = 54 bytes; 8-bit values, 8-bit indices: 7·16 + 24 = 17
    assert lp.csr_bytes(W) == 54 and lp.csr_bytes(W, 8, 8) == 17
    assert lp.compressed_bytes(W) == {"dense": 32, "nm": 18, "csr": 54}
    assert lp.compressed_bytes(torch.ones(2, 8))["nm"] is None
    assert lp.nm_bytes(torch.zeros(768, 192)) / lp.dense_bytes(torch.zeros(768, 192)) == 0.5625
    with pytest.raises(ValueError, match="2:4 sparse"):
        lp.nm_bytes(torch.ones(2, 8))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="'X' parameter of wanda_scores"):
        lp.wanda_scores(torch.ones(2, 3), torch.ones(4, 2))
    with pytest.raises(ValueError, match="'amount' parameter of unstructured_mask"):
        lp.unstructured_mask(torch.ones(2, 3), 1.0)
    with pytest.raises(ValueError, match="'n' parameter of nm_mask"):
        lp.nm_mask(torch.ones(2, 4), 5, 4)
    with pytest.raises(ValueError, match="'X' parameter of prune_weight"):
        lp.prune_weight(torch.ones(2, 4), "wanda")
    with pytest.raises(ValueError, match="'nm' parameter of sparsegpt"):
        sg.sparsegpt(torch.ones(2, 6), torch.eye(6), nm=(2, 4))
    with pytest.raises(ValueError, match="'H' parameter of sparsegpt"):
        sg.sparsegpt(torch.ones(2, 4), -torch.eye(4))
