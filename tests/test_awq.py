"""labkit.awq: salient channels, the 1 % fp16 ablation, the scale search (α = 0 is RTN, never worse),
folding leaves the fp32 function unchanged, and the search against torchao's prototype AWQ (CPU, int8)."""
import warnings

import pytest
import torch
from torch import nn

from labkit import awq
from labkit import quantize as Q


def _layer(seed, n=512, d_in=192, d_out=96):
    """Activations with a few outlier channels, as in LLMs."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d_in, generator=g) * torch.exp(torch.randn(d_in, generator=g))
    X[:, torch.randperm(d_in, generator=g)[:3]] *= 20
    W = torch.randn(d_out, d_in, generator=g) * 0.05
    return W, X


def test_act_scale_and_salient_channels_by_hand():
    X = torch.tensor([[1.0, -4.0, 0.5, 2.0], [-3.0, 2.0, 0.5, -2.0]])
    assert awq.act_scale(X).tolist() == [2.0, 3.0, 0.5, 2.0]
    assert awq.salient_channels(awq.act_scale(X), 0.25).tolist() == [1]
    assert awq.salient_channels(awq.act_scale(X), 0.5).tolist() == [0, 1] or \
        awq.salient_channels(awq.act_scale(X), 0.5).tolist() == [1, 3]           # a tie at 2.0
    assert awq.salient_channels(torch.arange(300.0), 0.01).tolist() == [297, 298, 299]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_keeping_the_salient_1_percent_beats_a_random_1_percent(seed):
    W, X = _layer(seed)
    e = awq.salient_ablation(W, X, bits=3, group_size=64, amount=0.01, seed=seed)
    assert e["activation"] < 0.6 * min(e["random"], e["weight"])      # 2 of the 3 outliers kept: ≥ 45 % less
    assert e["random"] <= e["rtn"] * 1.0001


def test_output_error_formula():
    W, X = _layer(3)
    W_hat = Q.groupwise(W, 4, 32)
    assert awq.output_error(W, W_hat, X) == pytest.approx(float(((X @ W.T - X @ W_hat.T) ** 2).mean()), rel=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("bits", [3, 4])
def test_search_alpha_zero_is_rtn_and_the_best_is_below_it(seed, bits):
    W, X = _layer(seed)
    s, alpha, losses = awq.search_scale(W, X, bits, 64)
    assert len(losses) == 20 and 0 < alpha < 1
    assert losses[0].item() == pytest.approx(awq.output_error(W, Q.groupwise(W, bits, 64), X), rel=1e-6)
    assert losses.min() < 0.5 * losses[0]                 # outlier channels: AWQ's big win
    assert losses.min() == losses[round(alpha * 20)]
    W_hat = awq.quantize_weight(W, X, bits, 64)
    assert awq.output_error(W, W_hat, X) == pytest.approx(losses.min().item(), rel=1e-4)
    s_x = awq.act_scale(X).pow(alpha).clamp(min=1e-4)
    assert torch.allclose(s, s_x / (s_x.max() * s_x.min()).sqrt())
    assert float(s.max() * s.min()) == pytest.approx(1.0, rel=1e-5)


def test_fold_into_layernorm_and_into_a_previous_linear_keeps_the_function():
    torch.manual_seed(0)
    ln, q, k = nn.LayerNorm(48), nn.Linear(48, 16), nn.Linear(48, 8)
    nn.init.normal_(ln.weight)
    nn.init.normal_(ln.bias)
    x = torch.randn(10, 48)
    before = (q(ln(x)), k(ln(x)))
    s = torch.exp(torch.randn(48))
    awq.fold_(ln, [q, k], s)
    assert torch.allclose(q(ln(x)), before[0], atol=1e-5) and torch.allclose(k(ln(x)), before[1], atol=1e-5)
    v, o = nn.Linear(32, 48), nn.Linear(48, 32)
    before, o_weight, v_bias = o(v(x[:, :32])), o.weight.clone(), v.bias.clone()
    awq.fold_(v, o, s)
    assert torch.allclose(o(v(x[:, :32])), before, atol=1e-5)
    assert torch.allclose(o.weight, o_weight * s) and torch.allclose(v.bias, v_bias / s)   # columns, rows
    with pytest.raises(ValueError, match="'s' parameter of fold_"):
        awq.fold_(ln, q, -s)
    with pytest.raises(ValueError, match="'prev' parameter of fold_"):
        awq.fold_(nn.Linear(3, 5), q, s)


def test_folded_model_quantized_equals_quantize_weight():
    """Quantizing the folded Linear's weight gives the layer AWQ's Ŵ_s, through the LayerNorm."""
    torch.manual_seed(1)
    W, X = _layer(4, d_in=64, d_out=32)
    ln, lin = nn.LayerNorm(64), nn.Linear(64, 32, bias=False)
    lin.weight.data = W.clone()
    H = ln(X).detach()
    s, _, _ = awq.search_scale(W, H, 4, 32)
    awq.fold_(ln, lin, s)
    lin.weight.data = Q.groupwise(lin.weight.data, 4, 32)
    expect = H @ awq.quantize_weight(W, H, 4, 32).T
    assert torch.allclose(lin(ln(X)), expect, atol=1e-4)


def test_search_matches_torchao_prototype_awq_on_cpu():
    """torchao's AWQObserver runs the same search (mean |x|, α = i/20, the √(max·min) normalization);
    on CPU its int4 base configs fail (Int4WeightOnlyConfig: 'Requires mslk >= 1.0.0';
    IntxWeightOnlyConfig: no activation pre-scaling), so the check uses Int8WeightOnlyConfig, whose
    per-row grid is labkit's groupwise(w, 8, None, "symmetric")."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchao.prototype.awq.core import AWQObserver
        from torchao.quantization import Int8WeightOnlyConfig
        from torchao.quantization.transform_module import _QUANTIZE_CONFIG_HANDLER
        from torchao.utils import DummyModule
        W, X = _layer(5, n=256, d_in=128, d_out=64)
        X = X * 3
        W = W.clone()
        cfg = Int8WeightOnlyConfig()
        base = _QUANTIZE_CONFIG_HANDLER[type(cfg)](DummyModule(W), cfg).weight.dequantize()
        assert torch.equal(base, Q.groupwise(W, 8, None, "symmetric"))
        obs = AWQObserver(W, None, cfg, 20)
        obs(X, None)
        theirs = obs.calculate_qparams()
    ours, alpha, losses = awq.search_scale(W, X, 8, None, "symmetric")
    assert torch.allclose(ours, theirs, rtol=1e-5), (alpha, losses)


# ------------------------------------------------------------------ from statistics; whole model
@pytest.mark.parametrize("bits,g", [(3, 32), (4, None)])
def test_search_from_hessian_finds_the_same_scale_as_from_activations(bits, g):
    gen = torch.Generator().manual_seed(bits)
    X = torch.randn(512, 64, generator=gen) * torch.linspace(0.1, 5, 64)       # uneven channels
    W = torch.randn(48, 64, generator=gen) * 0.05
    s, alpha, losses = awq.search_scale(W, X, bits, g)
    s_h, alpha_h, losses_h = awq.search_scale_hessian(W, X.double().T @ X.double(), awq.act_scale(X), bits, g)
    assert alpha_h == alpha and torch.allclose(s_h, s)
    assert torch.allclose(losses_h / X.shape[0], losses, rtol=1e-4)            # n times the mean


def test_quantize_model_uses_each_layers_awq_and_leaves_the_model():
    from labkit import activations, gpt, text
    model = gpt.build(vocab_size=83, block_size=16, n_layer=2, n_head=2, n_embd=32, seed=0)
    cal = [text.calibration(torch.randint(0, 83, (2000,), generator=torch.Generator().manual_seed(0)), 8, 16)]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = awq.quantize_model(model, cal, bits=3, group_size=16, scheme="affine", clip=False)
    q_clip = awq.quantize_model(model, cal, bits=3, group_size=16, scheme="affine")     # clip=True
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    stats = activations.collect(model, cal)
    clipped = 0
    for name in activations.linears(model):
        W, st = model.get_submodule(name).weight, stats[name]
        s, _, losses = awq.search_scale_hessian(W, st.H, st.mean_abs, 3, 16, "affine")
        assert torch.allclose(q.get_submodule(name).weight, Q.groupwise(W * s, 3, 16, "affine") / s)
        assert losses.min() <= losses[0]                                       # never worse than RTN
        W_hat, r = awq.search_clip(W * s, st.H / torch.outer(s.double(), s.double()), 3, 16, "affine")
        assert torch.allclose(q_clip.get_submodule(name).weight, W_hat / s)
        clipped += int((r < 1).sum())
    assert clipped > 0, "the clipping search shrinks some group's range on this model"
    with pytest.raises(TypeError, match="The 'clip' parameter of quantize_model must be a bool"):
        awq.quantize_model(model, cal, clip=1)
    with pytest.raises(ValueError, match="The 'bits' parameter of quantize_model"):
        awq.quantize_model(model, cal, bits=0)


# ------------------------------------------------------------------ the clipping search
@pytest.mark.parametrize("bits,g,scheme", [(3, 16, "affine"), (2, 16, "restricted"), (4, None, "symmetric"), (3, 24, "affine")])
def test_search_clip_is_the_per_group_brute_force(bits, g, scheme):
    """Every (row, group) gets the r of least Δ H_gg Δᵀ among 1, 0.95, …, 0.55 (brute force, one
    group at a time; g = 24 leaves a last group of 16 of the 40 inputs)."""
    W, X = _layer(bits, n=256, d_in=40, d_out=6)
    H = X.double().T @ X.double()
    W_hat, r = awq.search_clip(W, H, bits, g, scheme)
    gs = 40 if g is None else g
    for i in range(W.shape[0]):
        for k, lo in enumerate(range(0, 40, gs)):
            w, Hg = W[i, lo:lo + gs], H[lo:lo + gs, lo:lo + gs]
            errs = []
            for step in range(10):
                ratio = 1 - step / 20
                m = ratio * w.abs().max()
                qw = Q.groupwise(w.clamp(-m, m).reshape(1, -1), bits, None, scheme).reshape(-1)
                d = (w - qw).double()
                errs.append((float(d @ Hg @ d), ratio, qw))
            best = min(errs, key=lambda e: e[0])              # min keeps the first of equal errors
            assert r[i, k].item() == pytest.approx(best[1])
            assert torch.allclose(W_hat[i, lo:lo + gs], best[2])


def test_search_clip_never_worse_than_rtn_and_helps_at_two_bits():
    W, X = _layer(0)
    H = X.double().T @ X.double()
    rtn = Q.groupwise(W, 2, 64, "restricted")
    W_hat, r = awq.search_clip(W, H, 2, 64, "restricted")
    e_rtn, e_clip = awq.output_error(W, rtn, X), awq.output_error(W, W_hat, X)
    assert e_clip < 0.9 * e_rtn and (r < 1).float().mean() > 0.5   # 2 bits: most groups clip
    W_hat1, r1 = awq.search_clip(W, H, 2, 64, "restricted", max_shrink=0.01)   # only r = 1 on the grid
    assert torch.equal(W_hat1, rtn) and bool((r1 == 1).all())


def test_search_clip_rejects_bad_input():
    W, X = _layer(0, n=16, d_in=8, d_out=4)
    H = X.double().T @ X.double()
    with pytest.raises(ValueError, match="The 'max_shrink' parameter of search_clip must be a float in the range"):
        awq.search_clip(W, H, max_shrink=1.0)
    with pytest.raises(ValueError, match="The 'H' parameter of search_clip"):
        awq.search_clip(W, H[:4, :4])
    with pytest.raises(TypeError, match="The 'W' parameter of search_clip"):
        awq.search_clip(W.numpy(), H)
