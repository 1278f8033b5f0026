"""labkit.deep_compression: sharing keeps pruned weights at zero; bits counted by hand."""
import pytest
import torch
from torch import nn

from labkit import deep_compression as dc


def toy():
    layer = nn.Linear(8, 2)
    with torch.no_grad():
        w = torch.zeros(16)
        w[[0, 1, 9, 15]] = torch.tensor([1.0, 1.0, -1.0, -1.0])
        layer.weight.copy_(w.view(2, 8))
    return nn.Sequential(layer)


def test_share_pruned_keeps_zeros_and_reproduces_weights():
    model = toy()
    shared = dc.share_pruned_(model, bits=1)
    codebook, idx = shared["0"]
    torch.testing.assert_close(codebook, torch.tensor([-1.0, 1.0, 0.0]))
    assert torch.equal(model[0].weight, codebook[idx])
    assert int((idx == 2).sum()) == 12                        # the pruned weights' own entry


def test_size_table_hand_computed():
    model = toy()
    shared = dc.share_pruned_(model, bits=1)
    row = dc.size_table(model, shared, index_bits=2).set_index("layer").loc["0"]
    # gaps 1, 1, 8, 6 with 2-bit indices (span 4): one filler each for 8 and 6 → 6 entries
    assert row["fillers"] == 2 and row["density"] == 0.25
    assert row["bits dense"] == 32 * 16 + 32 * 2
    assert row["bits P"] == 6 * (32 + 2) + 64
    assert row["bits P+Q"] == 6 * (2 + 2) + 32 * 2 + 64       # values: 3 symbols → 2 bits
    # values [1,1,2,0,2,0] → Huffman 10 bits; indices [0,0,3,3,3,1] → 9 bits; tables 15 + 20
    assert row["bits P+Q+H"] == 10 + 9 + 15 + 20 + 64 + 64
    assert row["rate P+Q"] == pytest.approx(576 / 152)


def test_finetune_shared_moves_codebook_not_pruned_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 3))
    with torch.no_grad():
        model[0].weight[:, :3] = 0
    shared = dc.share_pruned_(model, bits=1)
    before = shared["0"][0].clone()
    X, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    dc.finetune_shared_(model, shared, X, y, epochs=2, lr=0.05, max_shift=0, progress=False,
                        device="cpu")
    codebook, idx = shared["0"]
    assert torch.equal(model[0].weight[:, :3], torch.zeros(3, 3))
    assert codebook[-1] == 0 and not torch.equal(codebook, before)
    torch.testing.assert_close(model[0].weight, codebook[idx])


@pytest.mark.parametrize("call, exc", [
    (lambda: dc.share_pruned_(toy(), bits=0), ValueError),
    (lambda: dc.share_pruned_(toy(), bits={"nope": 2}), ValueError),
    (lambda: dc.share_pruned_("m", bits=2), TypeError),
    (lambda: dc.size_table(toy(), {}, 5), ValueError),
])
def test_bad_input(call, exc):
    with pytest.raises(exc, match="parameter of"):
        call()


def test_size_table_needs_index_bits_for_every_layer():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    shared = dc.share_pruned_(model, bits=1)
    assert dc.size_table(model, shared, index_bits={"0": 2, "2": 3}).shape[0] == 3
    with pytest.raises(ValueError, match=r"'index_bits' parameter of size_table must be an int or a dict with "
                                         r"an entry for every prunable layer \['0', '2'\]. Got \['2'\] instead"):
        dc.size_table(model, shared, index_bits={"0": 2})
    with pytest.raises(ValueError, match=r"among '0', '2'. Got \['9'\]"):
        dc.size_table(model, shared, index_bits={"0": 2, "2": 2, "9": 2})
