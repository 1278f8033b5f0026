"""labkit.oneshot: the whole-model driver on a tiny GPT — stages in call order, sequential
statistics equal to pruning layer by layer by hand, exact N:M masks, the joint 4-bit grid, bytes,
and the sparse fine-tune keeping its zeros."""
import copy

import pytest
import torch

from labkit import activations, gpt, llm_prune, oneshot, text


def tiny(seed=0):
    return gpt.build(vocab_size=83, block_size=16, n_layer=2, n_head=2, n_embd=32, seed=seed).eval()


IDS = text.encode("To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer " * 4)
CALIB = [text.calibration(IDS, 8, 16, seed=0)]


def test_stages_follow_the_call_order_one_linear_each_in_the_gpt():
    # c_attn's input is freed before ln_2's output is made: a stage test by address would merge them
    assert oneshot.stages(tiny(), CALIB[0]) == [[f"h.{b}.{n}"] for b in range(2)
                                                for n in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]


def test_linears_reading_one_tensor_are_one_stage():
    class Fork(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.o = (torch.nn.Linear(4, 4) for _ in range(3))

        def forward(self, x):
            return self.o(self.q(x) * self.k(x))

    assert oneshot.stages(Fork(), torch.randn(2, 4)) == [["q", "k"], ["o"]]


@pytest.mark.parametrize("criterion", ["wanda", "sparsegpt"])
def test_sequential_driver_equals_pruning_layer_by_layer_by_hand(criterion):
    model = tiny()
    pruned, masks = oneshot.prune_model(model, CALIB, criterion, amount=0.5)
    by_hand = copy.deepcopy(model)
    for name, layer in activations.linears(by_hand).items():       # collect on the model pruned so far
        s = activations.collect(by_hand, CALIB, hessian=True, layers=[name])[name]
        mask = llm_prune.prune_linear_(layer, criterion, 0.5, X=s.norm.float() if criterion == "wanda" else None,
                                       H=s.H if criterion == "sparsegpt" else None)
        assert torch.equal(mask, masks[name]), name
        assert torch.allclose(layer.weight, pruned.get_submodule(name).weight, atol=1e-5), name
    once, masks_once = oneshot.prune_model(model, CALIB, criterion, amount=0.5, sequential=False)
    assert any(not torch.equal(masks[n], masks_once[n]) for n in masks), "sequential differs from one pass"
    assert torch.equal(masks["h.0.attn.c_attn"], masks_once["h.0.attn.c_attn"]), "the first stage sees the dense model"
    assert torch.equal(model.h[0].attn.c_attn.weight, tiny().h[0].attn.c_attn.weight), "the model is not changed"


@pytest.mark.parametrize("criterion", ["magnitude", "wanda", "sparsegpt"])
@pytest.mark.parametrize("nm", [(2, 4), (4, 8)])
def test_masks_are_exactly_n_of_m_and_the_weights_follow_them(criterion, nm):
    pruned, masks = oneshot.prune_model(tiny(), CALIB, criterion, nm=nm)
    assert len(masks) == 8 and abs(oneshot.sparsity(masks) - 0.5) < 1e-12
    for name, mask in masks.items():
        W = pruned.get_submodule(name).weight
        assert llm_prune.is_nm(mask, *nm) and int(mask.sum()) == mask.numel() // 2, name
        assert (W[~mask] == 0).all() and llm_prune.is_nm(W, *nm), name


def test_unstructured_amounts_and_magnitude_reads_no_data():
    pruned, masks = oneshot.prune_model(tiny(), CALIB, "magnitude", amount=0.7)
    assert abs(oneshot.sparsity(masks) - 0.7) < 1e-3
    W = tiny().h[1].mlp.c_fc.weight
    assert torch.equal(masks["h.1.mlp.c_fc"], llm_prune.unstructured_mask(W.abs(), 0.7))
    rows = oneshot.prune_model(tiny(), CALIB, "wanda", amount=0.25)[1]
    assert all((m.sum(1) == m.shape[1] - round(0.25 * m.shape[1])).all() for m in rows.values()), "Wanda: per row"


def test_joint_4_bit_puts_each_row_on_16_levels():
    pruned, masks = oneshot.prune_model(tiny(), CALIB, "sparsegpt", amount=0.5, bits=4)
    for name, mask in masks.items():
        W = pruned.get_submodule(name).weight.detach()
        assert max(len(torch.unique(row)) for row in W) <= 16, name      # 0 is on the affine grid
        assert (W[~mask] == 0).all()


def test_model_bytes_by_hand():
    pruned, masks = oneshot.prune_model(tiny(), CALIB, "magnitude", nm=(2, 4))
    names = list(masks)
    n_w = sum(m.numel() for m in masks.values())                       # 2 × (3·32·32 + 32·32 + 2·4·32·32)
    b = oneshot.model_bytes(pruned, names)
    assert n_w == 2 * 12 * 32 * 32 and b["dense"] == 2 * n_w
    assert b["nm"] == n_w // 2 * 18 // 8 and b["nm"] / b["dense"] == 0.5625
    assert b["csr"] == (n_w // 2 * 48 + sum(m.shape[0] + 1 for m in masks.values()) * 32) // 8
    assert oneshot.model_bytes(tiny(), names)["nm"] is None


def test_finetune_keeps_the_zeros_and_lowers_the_loss():
    pruned, masks = oneshot.prune_model(tiny(), CALIB, "magnitude", nm=(2, 4))
    h = oneshot.finetune_(pruned, masks, IDS, steps=30, batch_size=8, T=16, lr=3e-3, seed=0)
    assert len(h["loss"]) == 30 and sum(h["loss"][-5:]) < sum(h["loss"][:5])
    for name, mask in masks.items():
        layer = pruned.get_submodule(name)
        assert not hasattr(layer, "weight_mask") and (layer.weight[~mask] == 0).all(), name
    again = oneshot.prune_model(tiny(), CALIB, "magnitude", nm=(2, 4))[0]
    assert oneshot.finetune_(again, masks, IDS, steps=30, batch_size=8, T=16, lr=3e-3, seed=0)["loss"] == h["loss"]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="The 'criterion' parameter of prune_model"):
        oneshot.prune_model(tiny(), CALIB, "obs")
    with pytest.raises(ValueError, match="The 'bits' parameter of prune_model must be None unless"):
        oneshot.prune_model(tiny(), CALIB, "wanda", bits=4)
    with pytest.raises(TypeError, match="The 'batches' parameter of prune_model"):
        oneshot.prune_model(tiny(), [], "wanda")
    with pytest.raises(TypeError, match="The 'nm' parameter of prune_model"):
        oneshot.prune_model(tiny(), CALIB, "wanda", nm=[2, 4])
    with pytest.raises(ValueError, match="The 'amount' parameter of prune_model"):
        oneshot.prune_model(tiny(), CALIB, "wanda", amount=1.0)
    with pytest.raises(ValueError, match="The 'names' parameter of model_bytes"):
        oneshot.model_bytes(tiny(), ["wte"])
    with pytest.raises(ValueError, match="The 'steps' parameter of finetune_"):
        oneshot.finetune_(tiny(), {"h.0.mlp.c_fc": torch.ones(128, 32, dtype=torch.bool)}, IDS, steps=-1)
