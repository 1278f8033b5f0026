"""labkit.activations: per-Linear input statistics by forward hooks, against the formulas by hand."""
import pytest
import torch
from torch import nn

from labkit import activations


def model_and_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    batches = [torch.randn(2, 7, 5), torch.randn(3, 5)]          # (B, T, in) and (N, in) rows
    return model, batches


def test_statistics_equal_the_formulas_on_the_stacked_inputs():
    model, batches = model_and_batches()
    stats = activations.collect(model, batches)
    assert list(stats) == ["0", "2"]
    X0 = torch.cat([b.reshape(-1, 5) for b in batches]).double()             # (17, 5)
    X2 = torch.relu(model[0](X0.float())).double().detach()                   # (17, 4) inputs of layer 2
    for name, X in (("0", X0), ("2", X2)):
        s = stats[name]
        assert s.n == 17
        torch.testing.assert_close(s.H, X.T @ X, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(s.sum_sq, (X ** 2).sum(0), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(s.sum_sq, torch.diagonal(s.H), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(s.mean_abs, X.abs().mean(0), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(s.max_abs, X.abs().amax(0), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(s.norm, X.norm(dim=0), rtol=1e-6, atol=1e-6)
        assert s.H.dtype == torch.float64


def test_hessian_off_float32_and_a_layer_subset():
    model, batches = model_and_batches()
    stats = activations.collect(model, batches, hessian=False, layers=["2"], dtype=torch.float32)
    assert list(stats) == ["2"] and stats["2"].H is None and stats["2"].sum_sq.dtype == torch.float32


def test_hooks_are_removed_and_the_mode_restored_even_when_a_batch_fails():
    model, batches = model_and_batches()
    model.train()
    before = model(batches[1])
    with pytest.raises(RuntimeError):
        activations.collect(model, [batches[0], torch.randn(2, 6)])           # wrong width: fails inside
    assert model.training
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())
    activations.collect(model, batches)
    assert model.training and all(not m._forward_pre_hooks for m in model.modules())
    torch.testing.assert_close(model(batches[1]), before)                     # the model is unchanged


def test_linears_skips_the_tied_head_and_checks_names():
    from labkit import gpt
    m = gpt.build(n_layer=1, n_embd=16, n_head=2)
    assert list(activations.linears(m)) == ["h.0.attn.c_attn", "h.0.attn.c_proj", "h.0.mlp.c_fc", "h.0.mlp.c_proj"]
    assert "lm_head" in activations.linears(m, exclude=())
    with pytest.raises(ValueError, match="The 'include' parameter of linears"):
        activations.linears(m, include=["nope"])
    stats = activations.collect(m, [torch.randint(0, 83, (2, 8))])
    assert stats["h.0.mlp.c_proj"].n == 16 and stats["h.0.mlp.c_proj"].H.shape == (64, 64)


def test_bad_batches_are_refused_by_name():
    model, _ = model_and_batches()
    with pytest.raises(ValueError, match="The 'batches' parameter of collect"):
        activations.collect(model, [])
    with pytest.raises(TypeError, match="The 'batches' parameter of collect"):
        activations.collect(model, torch.randn(2, 5))
