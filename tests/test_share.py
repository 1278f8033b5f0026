"""labkit.share: in-place weight sharing and the codebook optimizer (Han et al. 2016 eq. 3)."""
import pytest
import torch
from torch import nn

from labkit import share
from labkit import quantize as Q


def tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def test_share_weights_in_place():
    m = tiny()
    w0 = m[0].weight.detach().clone()
    shared = share.share_weights_(m, 2)
    assert set(shared) == {"0", "2"}
    c, idx = shared["0"]
    assert torch.equal(m[0].weight, c[idx]) and len(torch.unique(m[0].weight)) <= 4
    assert torch.equal((c, idx)[0], Q.kmeans(w0, 2)[0])


def test_codebook_sgd_step_by_hand():
    m = tiny()
    shared = share.share_weights_(m, 1)
    x, y = torch.randn(4, 6, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 0])
    opt = share.CodebookSGD(m, shared, lr=0.1)
    nn.functional.cross_entropy(m(x), y).backward()
    c, idx = shared["0"]
    expected = c - 0.1 * Q.codebook_grad(idx, m[0].weight.grad, len(c))   # eq. 3
    b_expected = m[0].bias - 0.1 * m[0].bias.grad
    opt.step()
    assert torch.allclose(m[0].weight, expected[idx])
    assert torch.allclose(m[0].bias, b_expected)
    assert len(torch.unique(m[0].weight)) <= 2                # still shared after the step
    assert torch.equal(shared["0"][0], c)                     # the caller's codebook untouched


def test_bad_input():
    m = tiny()
    with pytest.raises(ValueError, match="'bits' parameter of kmeans"):
        share.share_weights_(m, 0)
    with pytest.raises(ValueError, match="'lr' parameter of CodebookSGD"):
        share.CodebookSGD(m, {}, lr=-1.0)
    with pytest.raises(ValueError, match="'shared' parameter of CodebookSGD"):
        share.CodebookSGD(m, {"9": (torch.zeros(2), torch.zeros(1))}, lr=0.1)
    with pytest.raises(ValueError, match="'model' parameter of share_weights_"):
        share.share_weights_(nn.ReLU(), 2)


def test_share_weights_of_a_masked_model_shares_the_kept_weights_and_keeps_the_masks():
    """Issue 15: on a masked model the shared values went into the derived `weight`, and a forward
    pass brought back weight_orig · mask: 116,776 distinct values instead of 2^bits."""
    from labkit import models, prune, sparsity

    m = prune.magnitude_(models.lenet300_100(seed=0), 0.5)
    keep = prune.masks(m)
    kept_before = m[1].weight_orig.detach()[keep["1"]].clone()
    shared = share.share_weights_(m, 2)
    m(torch.zeros(1, 784))                                         # recomputes weight_orig · mask
    assert prune.masks(m).keys() == keep.keys()
    for name, layer in (("1", m[1]), ("3", m[3]), ("5", m[5])):
        c, idx = shared[name]
        assert torch.equal(layer.weight_orig, c[idx])              # the Parameter holds the shared values
        assert torch.equal(layer.weight, c[idx] * keep[name])
        assert torch.equal(layer.weight != 0, keep[name])          # pruned stay zero, kept stay non-zero
        assert len(torch.unique(layer.weight)) <= 4 + 1            # 2^2 shared values and the zeros
    assert torch.equal(shared["1"][0], Q.kmeans(kept_before, 2)[0])   # clustered: the kept weights only
    assert sparsity.sparsity(m) == pytest.approx(0.5, abs=1e-4)
    x, y = torch.randn(4, 784, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 2, 0])
    opt = share.CodebookSGD(m, shared, lr=0.1)
    nn.functional.cross_entropy(m(x), y).backward()
    opt.step()
    m(x)
    assert len(torch.unique(m[1].weight)) <= 5 and torch.equal(m[1].weight != 0, keep["1"])
    assert not torch.equal(m[1].weight_orig, shared["1"][0][shared["1"][1]])   # the step trained C


def test_the_kmeans_kernels_live_in_quantize_and_share_only_wraps_them():
    """torch's kernel/wrapper split: the pure kernels in quantize, what changes a module in share."""
    for name in ("kmeans", "assign", "codebook_grad", "finetune_codebook"):
        assert getattr(Q, name).__module__ == "labkit.quantize"
    assert not hasattr(Q, "__getattr__")                    # no lazy import of share from quantize
    assert share.share_weights_.__module__ == share.CodebookSGD.__module__ == "labkit.share"


def test_assign_is_the_nearest_codebook_entry():
    c = torch.tensor([-1.0, 0.0, 2.0])
    x = torch.tensor([[-3.0, -0.5], [0.9, 1.1]])             # -0.5: a tie → the lower entry
    assert Q.assign(x, c).tolist() == [[0, 0], [1, 2]]
    with pytest.raises(ValueError, match="'codebook' parameter of assign must be a sorted 1-D tensor"):
        Q.assign(x, torch.tensor([2.0, 0.0]))
