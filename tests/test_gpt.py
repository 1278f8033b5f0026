"""labkit.gpt: the char-level GPT (shapes, causality, tied head, checkpoint with sha256) and its
perplexity evaluator, checked against the formulas; the shipped checkpoint's test loss."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labkit import data, gpt, models, text

TEST_LOSS_BOUND = 2.05   # measured 1.9886 on the first 8,192 test characters (1.8745 on all 201,856)


@pytest.fixture(scope="module")
def small():
    return gpt.build(n_layer=2, n_embd=32, n_head=4, block_size=16, seed=0).eval()


def test_shapes_and_linear_layers(small):
    idx = torch.randint(0, 83, (3, 16))
    assert small(idx).shape == (3, 16, 83)
    names = [n for n, m in small.named_modules() if isinstance(m, nn.Linear)]
    assert names == [f"h.{i}.{n}" for i in range(2) for n in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")] + ["lm_head"]
    with pytest.raises(ValueError, match="The 'idx' parameter of GPT.forward"):
        small(torch.zeros(1, 17, dtype=torch.int64))


def test_output_at_t_does_not_depend_on_later_tokens(small):
    g = torch.Generator().manual_seed(1)
    a = torch.randint(0, 83, (2, 16), generator=g)
    for t in (0, 5, 14):
        b = a.clone()
        b[:, t + 1:] = torch.randint(0, 83, (2, 15 - t), generator=g)
        la, lb = small(a), small(b)
        torch.testing.assert_close(la[:, : t + 1], lb[:, : t + 1], rtol=0, atol=1e-6)
        assert not torch.allclose(la[:, t + 1:], lb[:, t + 1:])


def test_attention_equals_masked_softmax_by_hand(small):
    attn = small.h[0].attn
    x = torch.randn(2, 7, 32)
    q, k, v = attn.c_attn(x).split(32, dim=2)
    q, k, v = (t.view(2, 7, 4, 8).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(8)
    scores = scores.masked_fill(torch.triu(torch.ones(7, 7, dtype=torch.bool), 1), float("-inf"))
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 7, 32)
    torch.testing.assert_close(attn(x), attn.c_proj(y), rtol=1e-5, atol=1e-6)


def test_the_head_is_tied_to_the_embedding(small):
    assert small.lm_head.weight is small.wte.weight
    assert small.num_parameters() == sum(p.numel() for p in small.state_dict().values()) - small.wte.weight.numel()


def test_save_load_round_trip_keeps_outputs_ties_and_metadata(small, tmp_path):
    path = tmp_path / "m.safetensors"
    gpt.save(small, path, {"recipe": {"steps": 3}})
    back = gpt.load(path, sha256=data.sha256(path))
    idx = torch.randint(0, 83, (2, 16))
    torch.testing.assert_close(back(idx), small(idx), rtol=0, atol=0)
    assert back.lm_head.weight is back.wte.weight and back.metadata == {"recipe": {"steps": 3}}
    with pytest.raises(ValueError, match="sha256 mismatch"):
        gpt.load(path, sha256="0" * 64)


def test_evaluate_is_the_mean_cross_entropy_over_fixed_windows(small):
    ids = torch.randint(0, 83, (16 * 5 + 3,), generator=torch.Generator().manual_seed(2))
    r = gpt.evaluate(small, ids)
    x, y = ids[:80].view(5, 16), ids[1:81].view(5, 16)
    loss = F.cross_entropy(small(x).flatten(0, 1), y.flatten()).item()
    assert r["tokens"] == 80 and r["loss"] == pytest.approx(loss, rel=1e-5)
    assert r["perplexity"] == pytest.approx(math.exp(loss), rel=1e-5)
    assert r["bits_per_char"] == pytest.approx(loss / math.log(2), rel=1e-5)
    per_window = F.cross_entropy(small(x).transpose(1, 2), y, reduction="none").mean(1)
    assert r["se"] == pytest.approx(per_window.std().item() / math.sqrt(5), rel=1e-4)
    assert gpt.evaluate(small, ids, max_tokens=40, batch_size=1)["tokens"] == 32      # the first 2 windows
    assert gpt.evaluate(small, ids, T=8)["tokens"] == 80
    small.train()
    assert gpt.evaluate(small, ids) == r and small.training                           # deterministic, mode kept
    small.eval()


def test_an_untrained_model_is_near_uniform(small):
    ids = torch.randint(0, 83, (1000,), generator=torch.Generator().manual_seed(3))
    assert gpt.evaluate(small, ids)["loss"] == pytest.approx(math.log(83), abs=0.05)


def test_generate_is_seeded(small):
    p = text.encode("To be")
    a = gpt.generate(small, p, 20, seed=1)
    assert len(a) == 25 and torch.equal(a[:5], p) and torch.equal(a, gpt.generate(small, p, 20, seed=1))


@pytest.fixture(scope="module")
def pretrained():
    return models.gpt()


def test_the_checkpoint_is_checked_before_loading(monkeypatch):
    monkeypatch.setattr(gpt, "CHECKPOINT", (gpt.CHECKPOINT[0], "0" * 64))
    with pytest.raises(ValueError, match="sha256 mismatch"):
        models.gpt()


def test_the_pretrained_model_and_its_recipe(pretrained):
    assert pretrained.num_parameters() == 1_820_352 and not pretrained.training
    meta = pretrained.metadata
    assert meta["vocab"] == text.CHARS and meta["recipe"]["seed"] == 0 and meta["torch"].startswith("2.")
    assert models.gpt(pretrained=False).num_parameters() == 1_820_352


def test_the_pretrained_test_loss_is_below_the_measured_bound(pretrained):
    test = text.encode(data.shakespeare().test)
    r = gpt.evaluate(pretrained, test, max_tokens=8192)
    assert r["tokens"] == 8192 and r["loss"] < TEST_LOSS_BOUND, r          # data/README.md has the figures
    assert r["loss"] < math.log(83) - 2                                     # far from a uniform guess (4.42)
    assert pretrained.metadata["test"]["loss"] < 1.90 and pretrained.metadata["steps_done"] == 800
