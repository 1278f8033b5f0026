"""labkit.smoothquant: the scale against the formula, folding that leaves the fp32 model unchanged
(LayerNorm → q/k/v, Linear → Linear, RMSNorm), and the point of it: W8A8 error down."""
import pytest
import torch
from torch import nn

from labkit import smoothquant as sq
from labkit import w8a8


def outlier_inputs(n=128, d=32, seed=0, channels=(3, 17), size=50.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    x[:, list(channels)] *= size
    return x


class Attention(nn.Module):
    """LayerNorm feeding three Linears (q, k, v), as in every transformer block."""

    def __init__(self, d=32):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, 16), nn.Linear(d, 8)
        with torch.no_grad():                        # a LayerNorm that makes outliers, as in MiniLM
            self.ln.weight.uniform_(0.5, 1.5)
            self.ln.weight[[3, 17]] = 30.0
            self.ln.bias.normal_()

    def forward(self, x):
        h = self.ln(x)
        return torch.cat([self.q(h), self.k(h), self.v(h)], dim=-1)


def test_scales_by_hand_with_the_reference_clamps():
    act = torch.tensor([4.0, 1.0, 0.0, 9.0])
    wmax = torch.tensor([1.0, 4.0, 2.0, 0.0])
    s = sq.scales(act, wmax, alpha=0.5)
    # √4/√1 = 2, √1/√4 = 0.5, 0 → clamp 1e-5, √9/√(1e-5) (weight max clamped at 1e-5)
    assert s.tolist() == pytest.approx([2.0, 0.5, 1e-5, 3 / 1e-5 ** 0.5])
    assert sq.scales(act, wmax, 1.0)[:2].tolist() == [4.0, 1.0]            # s = max|X_j|
    assert sq.scales(act, wmax, 0.0)[:3].tolist() == [1.0, 0.25, 0.5]      # s = 1 / max|W_j|
    a, w = torch.rand(10) + 0.1, torch.rand(10) + 0.1
    assert torch.allclose(sq.scales(a, w, 0.3), a ** 0.3 / w ** 0.7)


def test_weight_max_is_over_rows_and_over_every_linear():
    m1, m2 = nn.Linear(3, 2, bias=False), nn.Linear(3, 4, bias=False)
    with torch.no_grad():
        m1.weight.copy_(torch.tensor([[1.0, -5.0, 0.0], [2.0, 0.0, 0.0]]))
        m2.weight.zero_()
        m2.weight[3, 2] = -7.0
    assert sq.weight_max([m1, m2]).tolist() == [2.0, 5.0, 7.0]
    assert sq.weight_max(m1).tolist() == [2.0, 5.0, 0.0]


def test_smoothing_a_layernorm_into_qkv_leaves_the_fp32_output_unchanged():
    torch.manual_seed(0)
    block = Attention()
    x = torch.randn(64, 32)
    y = block(x).detach()
    act_max = w8a8.input_absmax(block, x)["q"]
    ln, (q, k, v), s = sq.smooth(block.ln, [block.q, block.k, block.v], act_max, alpha=0.5)
    assert torch.equal(block(x), y)                                        # the copy changed, not block
    block.ln, block.q, block.k, block.v = ln, q, k, v
    assert torch.allclose(block(x), y, atol=1e-5, rtol=1e-5)
    assert s.max() > 3                                                     # it did scale the outliers


def test_in_place_smoothing_balances_the_maxima_at_alpha_one_half():
    torch.manual_seed(1)
    block = Attention()
    x = torch.randn(64, 32)
    y = block(x).detach()
    act_max = w8a8.input_absmax(block, x)["q"]
    s = sq.smooth_(block.ln, [block.q, block.k, block.v], act_max, 0.5)
    assert torch.allclose(block(x), y, atol=1e-5, rtol=1e-5)
    after = w8a8.input_absmax(block, x)["q"]
    assert torch.allclose(after, act_max / s, rtol=1e-5)
    # α = ½: max|X_j / s_j| = √(max|X_j| · max|W_j|) = max|W_j s_j|, the two maxima are equal
    assert torch.allclose(after, sq.weight_max([block.q, block.k, block.v]), rtol=1e-4)


def test_folding_into_a_preceding_linear_and_into_rmsnorm():
    torch.manual_seed(2)
    v, out = nn.Linear(16, 24), nn.Linear(24, 8)
    x = torch.randn(10, 16)
    y = out(v(x)).detach()
    s = torch.rand(24) * 10 + 0.1
    v2, (out2,) = sq.fold(v, out, s)
    assert torch.allclose(out2(v2(x)), y, atol=1e-5, rtol=1e-5)
    assert torch.allclose(v2.weight, v.weight / s[:, None]) and torch.allclose(out2.weight, out.weight * s)
    norm, lin = nn.RMSNorm(16), nn.Linear(16, 4)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
    y = lin(norm(x)).detach()
    sq.fold_(norm, [lin], torch.rand(16) + 0.5)
    assert torch.allclose(lin(norm(x)), y, atol=1e-5, rtol=1e-5)


def test_smoothquant_lowers_the_w8a8_per_tensor_error():
    torch.manual_seed(3)
    block = Attention()
    x = torch.randn(256, 32)
    stats = w8a8.input_absmax(block, x)
    naive = w8a8.layer_errors(block, w8a8.w8a8(block, "channel", "static", act_max=stats), x)
    sq.smooth_(block.ln, [block.q, block.k, block.v], stats["q"], 0.5)
    stats = w8a8.input_absmax(block, x)
    smoothed = w8a8.layer_errors(block, w8a8.w8a8(block, "channel", "static", act_max=stats), x)
    for name in ("q", "k", "v"):
        assert smoothed[name] < 0.25 * naive[name], (name, naive[name], smoothed[name])


def test_llm_int8_and_smoothquant_both_fix_the_outliers_at_different_bytes():
    torch.manual_seed(4)
    block = Attention()
    x = torch.randn(256, 32)
    stats = w8a8.input_absmax(block, x)
    naive_model = w8a8.w8a8(block, "channel", "token")
    naive = w8a8.layer_errors(block, naive_model, x)
    decomposed_model = w8a8.llm_int8(block, stats)
    decomposed = w8a8.layer_errors(block, decomposed_model, x)
    k = int(decomposed_model.q.outliers.sum())
    assert decomposed_model.q.outliers[[3, 17]].all() and k < 8
    sq.smooth_(block.ln, [block.q, block.k, block.v], stats["q"], 0.5)
    smoothed_model = w8a8.w8a8(block, "channel", "token")
    smoothed = w8a8.layer_errors(block, smoothed_model, x)
    for name in ("q", "k", "v"):
        assert decomposed[name] < 0.25 * naive[name] and smoothed[name] < 0.25 * naive[name]
    # SmoothQuant's bytes are plain W8A8's (s is folded away); LLM.int8() pays 1 more byte per
    # weight of its k fp16 columns: (32 + 16 + 8) output rows × k
    assert w8a8.weight_bytes(smoothed_model) == w8a8.weight_bytes(naive_model)
    assert w8a8.weight_bytes(decomposed_model) == w8a8.weight_bytes(naive_model) + 56 * k


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="'weight_max' parameter of scales must be a 1-D tensor of length 3"):
        sq.scales(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="'alpha' parameter of scales"):
        sq.scales(torch.ones(3), torch.ones(3), 1.5)
    with pytest.raises(TypeError, match="'prev' parameter of fold_"):
        sq.fold_(nn.ReLU(), nn.Linear(3, 2), torch.ones(3))
    with pytest.raises(ValueError, match="'prev' parameter of fold_"):
        sq.fold_(nn.LayerNorm(3, elementwise_affine=False), nn.Linear(3, 2), torch.ones(3))
    with pytest.raises(ValueError, match="'linears' parameter of smooth_"):
        sq.smooth_(nn.LayerNorm(3), [nn.Linear(3, 2), nn.Linear(4, 2)], torch.ones(3))


# ---- whole models: smooth_model on the labkit GPT (LN folded) and a small BERT (explicit scales)
def _tiny_bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=16)
    bert = BertModel(cfg, add_pooling_layer=False).eval()
    with torch.no_grad():                              # outlier channels, as MiniLM has
        for layer in bert.encoder.layer:
            layer.attention.output.LayerNorm.weight[[3, 7]] = 25.0
            layer.output.LayerNorm.weight[5] = 30.0
    return bert


def test_smooth_model_leaves_the_fp32_gpt_unchanged_and_folds_into_its_layernorms():
    from labkit import gpt, text

    torch.manual_seed(0)
    model = gpt.build(n_layer=2, n_embd=48, n_head=4, block_size=16).eval()
    ids = text.calibration(text.encode("To be, or not to be, that is the question. " * 4), 4, 16, seed=0)
    act = w8a8.input_absmax(model, ids)
    sm = sq.smooth_model(model, act, alpha=0.5)
    with torch.no_grad():
        torch.testing.assert_close(sm(ids), model(ids), rtol=0, atol=1e-5)
    assert isinstance(sm.h[0].attn.c_attn, nn.Linear)                  # folded into ln_1
    assert not torch.equal(sm.h[0].ln_1.weight, model.h[0].ln_1.weight)
    assert isinstance(sm.h[0].mlp.c_proj, sq.Smoothed)                 # after GELU: explicit
    s = sq.scales(act["h.0.attn.c_attn"], sq.weight_max(model.h[0].attn.c_attn), 0.5)
    torch.testing.assert_close(sm.h[0].ln_1.weight, model.h[0].ln_1.weight / s)
    plain = sq.smooth_model(model, act, alpha=0.5, fold_norms=False)
    assert isinstance(plain.h[0].attn.c_attn, sq.Smoothed)
    with torch.no_grad():
        torch.testing.assert_close(plain(ids), model(ids), rtol=0, atol=1e-5)


def test_smooth_model_on_a_post_ln_bert_is_exact_and_cuts_static_w8a8_error():
    bert = _tiny_bert()
    ids = torch.randint(0, 50, (4, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    batch = {"input_ids": ids, "attention_mask": mask}
    act = w8a8.input_absmax(bert, batch)
    groups = sq.groups(bert)
    assert groups[0] == (None, ["encoder.layer.0.attention.self.query", "encoder.layer.0.attention.self.key",
                                "encoder.layer.0.attention.self.value"]) and len(groups) == 8
    sm = sq.smooth_model(bert, act, alpha=0.5)
    with torch.no_grad():
        ref = bert(**batch).last_hidden_state
        torch.testing.assert_close(sm(**batch).last_hidden_state, ref, rtol=0, atol=1e-5)
        naive = w8a8.w8a8(bert, "channel", "static", act)
        smooth = w8a8.w8a8(sm, "channel", "static", w8a8.input_absmax(sm, batch))
        e_naive = ((naive(**batch).last_hidden_state - ref) ** 2).mean()
        e_smooth = ((smooth(**batch).last_hidden_state - ref) ** 2).mean()
    assert e_smooth < e_naive, (float(e_smooth), float(e_naive))
    q = sm.get_submodule("encoder.layer.0.attention.self.query")
    assert isinstance(q, sq.Smoothed)
    torch.testing.assert_close(q.inv_s, 1 / sq.scales(act["encoder.layer.0.attention.self.query"],
                                                      sq.weight_max([bert.get_submodule(f"encoder.layer.0.attention.self.{p}")
                                                                     for p in ("query", "key", "value")]), 0.5))


def test_smooth_model_rejects_unknown_models_and_missing_maxima():
    with pytest.raises(ValueError, match="The 'model' parameter of groups must be a labkit GPT or a MiniLM"):
        sq.smooth_model(nn.Sequential(nn.Linear(4, 4)), {"0": torch.ones(4)})
    with pytest.raises(ValueError, match="The 'act_max' parameter of smooth_model"):
        sq.smooth_model(_tiny_bert(), {})
    with pytest.raises(ValueError, match="The 'alpha' parameter of smooth_model"):
        sq.smooth_model(_tiny_bert(), {}, alpha=1.5)
