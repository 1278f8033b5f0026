"""labkit.minilm: all-MiniLM-L6-v2 offline, its embeddings equal to sentence-transformers' encode()
(reference values below, computed with sentence-transformers 6.2.0 on the same weights), the sha256
check, and the STS Spearman evaluator against the formula (scipy) on the shipped sample."""
from pathlib import Path

import pytest
import torch
from scipy.stats import spearmanr

from labkit import data, minilm, models

S = ["A man is playing a guitar.", "A man plays the guitar.", "The stock market fell sharply on Monday.",
     "Two children are running in the park.", "Interest rates were raised by the central bank."]
REF_FIRST4 = torch.tensor([[0.0216641, -0.0048642, -0.0096491, -0.0634013],      # SentenceTransformer(...)
                           [0.0393917, -0.0034670, -0.0064487, -0.0624961],      # .encode(S, normalize_embeddings=True)
                           [0.0452459, -0.0135802, 0.0693595, 0.0379881],        # [:, :4]
                           [0.0108533, -0.0179845, 0.0276788, 0.0074125],
                           [0.0509388, -0.0437069, -0.0651284, -0.0180993]])
REF_COS0 = torch.tensor([1.0, 0.9790110, -0.0614735, -0.1598725, -0.0759548])   # cos(S[0], S[i])


@pytest.fixture(scope="module")
def model():
    return models.minilm()


def test_embeddings_are_unit_vectors_equal_to_sentence_transformers(model):
    e = model.encode(S)
    assert e.shape == (5, 384) and e.dtype == torch.float32
    torch.testing.assert_close(e.norm(dim=1), torch.ones(5), rtol=0, atol=1e-6)
    torch.testing.assert_close(e[:, :4], REF_FIRST4, rtol=0, atol=1e-6)   # the reference is printed to 7 digits
    torch.testing.assert_close(e @ e[0], REF_COS0, rtol=0, atol=1e-6)
    cos = e @ e.T                                             # a paraphrase is nearer than a different topic
    assert cos[0, 1] > 0.9 > 0.2 > cos[0, 2] and cos[2, 4] > cos[2, 3]


def test_batching_and_order_do_not_change_the_embeddings(model):
    a = model.encode(S, batch_size=2)
    b = model.encode(S[::-1], batch_size=5).flip(0)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    assert model.encode("A man plays the guitar.").shape == (1, 384)


def test_mean_pool_is_the_masked_mean_then_l2_normalized():
    h = torch.tensor([[[2.0, 0.0], [4.0, 8.0], [100.0, 100.0]]])   # mean of the first two: (3, 4)
    m = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(minilm.mean_pool(h, m), torch.tensor([[0.6, 0.8]]))


def test_the_weights_are_checked_before_loading(monkeypatch):
    monkeypatch.setitem(minilm.FILES, "model.safetensors", "0" * 64)
    with pytest.raises(ValueError, match="sha256 mismatch"):
        models.minilm()


def test_spearman_on_the_shipped_sample_equals_the_formula(model):
    sample = data.sts_sample()
    assert len(sample.pairs) == 14 and sample.scores.dtype == torch.float64
    got = minilm.spearman(model, sample.pairs, sample.scores)
    a = model.encode([p[0] for p in sample.pairs])
    b = model.encode([p[1] for p in sample.pairs])
    want = 100 * spearmanr((a * b).sum(1).numpy(), sample.scores.numpy()).statistic
    assert got == pytest.approx(want, abs=1e-6)
    assert got > 90        # measured 98.24: MiniLM ranks these pairs nearly as written


def test_the_sts_benchmark_is_not_shipped_and_its_absence_is_explained(monkeypatch, tmp_path):
    monkeypatch.setenv(data.STS_ENV, str(tmp_path / "absent.csv"))
    monkeypatch.setattr(data, "__file__", str(tmp_path / "labkit" / "data.py"))
    with pytest.raises(data.DataMissingError, match="not shipped"):
        data.sts_benchmark()
    with pytest.raises(ValueError, match="sha256 mismatch"):
        data.sts_benchmark(Path(__file__))   # a file that is not STS-B


def test_fidelity_is_the_row_cosine():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    f = minilm.fidelity(a, b)
    assert f["min_cos"] == pytest.approx(2 ** -0.5) and f["mean_cos"] == pytest.approx((1 + 2 ** -0.5) / 2)
    assert f["max_abs"] == 1.0 and minilm.fidelity(a, a)["mean_cos"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="The 'embeddings' parameter of fidelity"):
        minilm.fidelity(a, b[:1])


def test_the_encoder_exposes_36_linears_and_activations_hook_them(model):
    from labkit import activations
    lin = activations.linears(model)
    assert len(lin) == 36 and "bert.pooler.dense" not in str(list(lin))      # the unused pooler is dropped
    batch = model.tokenize(S[:3])
    stats = activations.collect(model, [batch], hessian=False)
    n_tokens = int(batch["input_ids"].numel())                                # padded positions included
    assert len(stats) == 36 and stats["bert.encoder.layer.0.attention.self.query"].n == n_tokens
