"""labkit.outliers: per-channel statistics against numpy / scipy, padding dropped, which tokens, and the
residual-stream quantizer against torch.fake_quantize_per_tensor_affine."""
import numpy as np
import pytest
import torch
from scipy.stats import kurtosis
from torch import nn

from labkit import outliers


class Post(nn.Module):
    """A post-LN block in miniature: LN(x + W x), whose LayerNorm reads the residual sum."""

    def __init__(self, d=8):
        super().__init__()
        self.lin = nn.Linear(d, d)
        self.ln = nn.LayerNorm(d)

    def forward(self, input_ids, attention_mask=None):
        x = input_ids.float()
        return self.ln(x + self.lin(x))


def test_channel_stats_match_numpy_and_scipy():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 6, generator=g)
    X[:, 2] *= 30
    X[5, 4] = 80.0                                    # one spike: a heavy-tailed channel
    st = outliers.channel_stats(X, q=99)
    x = X.double().numpy()
    np.testing.assert_allclose(st["max"].numpy(), np.abs(x).max(0))
    np.testing.assert_allclose(st["pct"].numpy(), np.percentile(np.abs(x), 99, axis=0), rtol=1e-10)
    np.testing.assert_allclose(st["kurtosis"].numpy(), kurtosis(x, axis=0, fisher=False), rtol=1e-8)
    assert st["kurtosis"][4] > 50 and abs(st["kurtosis"][0] - 3) < 1    # the spike vs a Gaussian


def test_channel_stats_rejects_bad_input():
    with pytest.raises(ValueError, match="The 'X' parameter of channel_stats must be a finite 2-D tensor"):
        outliers.channel_stats(torch.ones(5))
    with pytest.raises(ValueError, match="The 'q' parameter of channel_stats"):
        outliers.channel_stats(torch.ones(4, 2), q=101)


def test_inputs_keep_only_real_tokens_and_summary_finds_the_outlier_channel():
    m = Post()
    ids = torch.randn(2, 5, 8)
    ids[..., 3] *= 40
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    X = outliers.inputs(m, [{"input_ids": ids, "attention_mask": mask}], "linear")
    assert list(X) == ["lin"] and X["lin"].shape == (8, 8)
    torch.testing.assert_close(X["lin"], ids[mask.bool()])
    R = outliers.inputs(m, [{"input_ids": ids, "attention_mask": mask}], "residual")
    with torch.no_grad():
        want = (ids + m.lin(ids))[mask.bool()]
    torch.testing.assert_close(R["ln"], want)
    row = outliers.summary({"lin": outliers.channel_stats(X["lin"])})[0]
    assert row["top channels"][0] == 3 and row["ratio"] > 5
    assert m.training                                     # mode restored, hooks removed
    assert not m.lin._forward_pre_hooks and not m.ln._forward_pre_hooks


def test_token_magnitude_by_hand():
    m = Post()
    ids = torch.zeros(1, 3, 8)
    ids[0, 1, 3], ids[0, 2, 5] = -7.0, 9.0
    mask = torch.tensor([[1, 1, 0]])
    mag = outliers.token_magnitude(m, {"input_ids": ids, "attention_mask": mask}, "lin", [3, 5])
    assert mag.tolist() == [[0.0, 7.0, 0.0]]                # token 2 is padding
    with pytest.raises(ValueError, match="The 'channels' parameter of token_magnitude"):
        outliers.token_magnitude(m, {"input_ids": ids}, "lin", [8])
    with pytest.raises(ValueError, match="The 'site' parameter of token_magnitude"):
        outliers.token_magnitude(m, {"input_ids": ids}, "nope", [0])


def test_quantize_residual_is_torch_fake_quant_before_the_norm():
    m = Post()
    x = torch.randn(3, 4, 8) * 5
    with torch.no_grad():
        r = x + m.lin(x)
    act_max = {"ln": r.abs().amax((0, 1))}
    q = outliers.quantize_residual(m, act_max)
    s = float(r.abs().max()) / 127
    with torch.no_grad():
        want = m.ln(torch.fake_quantize_per_tensor_affine(r, s, 0, -127, 127))
        got = q(x)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert isinstance(m.ln, nn.LayerNorm)                  # the original is untouched
    assert not torch.equal(got, m(x))                      # it does quantize
    with pytest.raises(ValueError, match="The 'act_max' parameter of quantize_residual"):
        outliers.quantize_residual(m, {})


def test_sites_and_bad_models():
    assert list(outliers.sites(Post(), "residual")) == ["ln"]
    with pytest.raises(ValueError, match="The 'model' parameter of sites"):
        outliers.sites(nn.Sequential(nn.ReLU()), "residual")
    with pytest.raises(ValueError, match="The 'kind' parameter of sites"):
        outliers.sites(Post(), "norm")
    with pytest.raises(TypeError, match="The 'batches' parameter of inputs"):
        outliers.inputs(Post(), torch.ones(2, 8))

