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
