"""labkit.deploy.sensitivity: the error budget of an int8 graph's quantizers, against references built
without it (torch.fake_quantize_* on the input, per-channel nearest rounding, labkit.adaround)."""
import math

import pytest
import torch
from torch import nn

from labkit.deploy import adaround, pt2e, qat, sensitivity
from test_qat import Tiny, data


class Seq(nn.Sequential):
    """The same ops as an nn.Sequential (labkit.adaround rounds the layers of a Sequential)."""

    def __init__(self):
        super().__init__(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU6(), nn.Conv2d(16, 16, 3, padding=1, groups=16),
                         nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def build(cls=Tiny, seed=0):
    torch.manual_seed(seed)
    return cls().eval()


def kl(ref, out):
    return nn.functional.kl_div(out.double().log_softmax(1), ref.double().log_softmax(1), log_target=True,
                                reduction="batchmean").item()


@pytest.fixture(scope="module")
def budget():
    model, C, X = build(), data(32, 1), data(24, 2)
    return model, C, X, sensitivity.error_budget(model, X[:1], [C], X, method="minmax")


def test_kl_to_by_hand():
    ref, out = torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, math.log(3.0)]])
    # p = (½, ½), q = (¼, ¾): KL = ½ ln(½/¼) + ½ ln(½/¾) = ½ ln 2 + ½ ln(2/3)
    assert sensitivity.kl_to(ref, out) == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3), abs=1e-7)
    assert sensitivity.kl_to(ref, ref) == 0.0


def test_rows_and_groups(budget):
    model, C, X, b = budget
    assert list(b.columns) == ["quantized", "tensor", "scale", "zero_point", "low", "high", "D"]
    assert list(b.quantized[:3]) == ["all", "weights", "activations"]
    acts = b[b.quantized == "activation"]
    # input, stem conv → ReLU6 (one grid), depthwise → ReLU6 (one grid), 1×1 conv, add, pool, linear
    assert acts.tensor.iloc[0] == "input"
    shared = [t for t in acts.tensor if "→" in t]
    assert len(shared) == 2 and shared[0].startswith("stem.0 conv2d output → stem.1 hardtanh")
    assert (b.D >= 0).all() and (b.D[:3] > 0).all()
    assert (acts.high > acts.low).all()
    assert torch.allclose(torch.tensor((acts.high - acts.low).values), torch.tensor(255 * acts.scale.values, dtype=torch.float64))


def test_all_is_the_fake_quant_graph_and_the_input_row_is_torchs_fake_quantize(budget):
    model, C, X, b = budget
    graph = pt2e.prepare(model, X[:1], "minmax")
    with torch.no_grad():
        graph(C)
        qat.fake_quant_graph(graph)
        assert b.D[0] == pytest.approx(kl(model(X), graph(X)), rel=1e-6)
        row = b[b.tensor == "input"].iloc[0]
        x_hat = torch.fake_quantize_per_tensor_affine(X, float(row.scale), int(row.zero_point), -128, 127)
        assert row.D == pytest.approx(kl(model(X), model(x_hat)), rel=1e-6)
        assert row.low == pytest.approx(C.min().item(), abs=row.scale) and row.high == pytest.approx(C.max().item(), abs=row.scale)


def test_weights_row_is_nearest_or_adaround_rounding():
    model, C, X = build(Seq), data(32, 1), data(24, 2)
    nearest = adaround.fold_bn(model)
    with torch.no_grad():
        for m in nearest.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                s = adaround.scales(m.weight)
                m.weight.copy_(s * (m.weight / s).round().clamp(-127, 127))
        ref = model(X)
        b = sensitivity.error_budget(model, X[:1], [C], X, per_quantizer=False)
        assert len(b) == 3
        assert b.D[1] == pytest.approx(kl(ref, nearest(X)), rel=1e-5)
        rounded = adaround.adaround(model, C)
        ada = sensitivity.error_budget(model, X[:1], [C], X, adaround=True, per_quantizer=False)
        assert ada.D[1] == pytest.approx(kl(ref, rounded(X)), rel=1e-5)
        assert ada.D[2] == pytest.approx(b.D[2], rel=0.05)   # activations: float weights either way (ranges differ a little)


def test_model_not_modified_and_bad_input():
    model, X = build(), data(4, 0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sensitivity.error_budget(model, X[:1], [X], X, per_quantizer=False)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ValueError, match="'images' parameter of error_budget"):
        sensitivity.error_budget(model, X[:1], [X], X[:, :2])
    with pytest.raises(ValueError, match="'method' parameter of error_budget"):
        sensitivity.error_budget(model, X[:1], [X], X, method="adaround")
    with pytest.raises(TypeError, match="'per_quantizer' parameter of error_budget"):
        sensitivity.error_budget(model, X[:1], [X], X, per_quantizer=1)
    with pytest.raises(ValueError, match="'logits' parameter of kl_to"):
        sensitivity.kl_to(torch.zeros(2, 3), torch.zeros(2, 4))
