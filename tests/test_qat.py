"""labkit.deploy.qat: fake quantizers at PT2E's observers, and label-free fine-tuning through them."""
import pytest
import torch
from torch import nn

from labkit.deploy import pt2e, qat
from labkit.prune import clone


class Tiny(nn.Module):
    """conv → ReLU6 → [depthwise → ReLU6 → conv 1×1] + residual → pool → linear (MobileNetV2's ops)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU6())
        self.block = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU6(), nn.Conv2d(16, 16, 1))
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.block(x)
        return self.head(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


def tiny(seed=0):
    torch.manual_seed(seed)
    return Tiny().eval()


def data(n, seed):
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_fake_quant_by_hand():
    fq = qat.FakeQuant(0.5, 3)
    x = torch.tensor([0.26, -70.0, 100.0, 0.75], requires_grad=True)
    y = fq(x)
    # round(0.52)+3 = 4 → 0.5; −140+3 = −137 → −128 → −65.5; 203 → 127 → 62; round(1.5)+3 = 5 (half to even) → 1.0
    assert y.tolist() == [0.5, -65.5, 62.0, 1.0]
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 0.0, 0.0, 1.0]           # straight through inside the range, 0 outside


def test_weight_fake_quant_is_on_the_restricted_symmetric_grid():
    w = torch.tensor([[0.5, -0.254, 0.1], [-2.0, 1.0, 0.0039]])
    q = qat.WeightFakeQuant()(w)
    s = torch.tensor([[0.5 / 127], [2.0 / 127]])
    assert torch.allclose(q / s, (w / s).round(), atol=1e-4)   # integers, nearest, s_c = max|W_c| / 127
    assert torch.equal(q.abs().amax(1), w.abs().amax(1))        # the largest weight keeps ±127 levels


def test_fake_quant_graph_computes_what_the_converted_int8_graph_computes():
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    model, C, X = tiny(), data(32, 1), data(16, 2)
    prepared = pt2e.prepare(model, X[:1], "percentile")
    with torch.no_grad():
        prepared(C)
    observers = sum(hasattr(m, "calculate_qparams") for _, m in prepared.named_modules(remove_duplicate=False))
    with pt2e.quiet_pytree():
        converted = convert_pt2e(clone(prepared))
    assert qat.fake_quant_graph(prepared) == observers >= 10
    assert not any(hasattr(m, "calculate_qparams") for m in prepared.modules())
    with torch.no_grad():
        got, want, fp32 = prepared(X), converted(X), model(X)
    assert not torch.allclose(got, fp32, atol=1e-3)              # quantized ...
    assert torch.allclose(got, want, atol=1e-5)                   # ... exactly as the int8 graph is


def test_finetune_trains_every_weight_through_the_fake_quantizers():
    model, X = tiny(), data(64, 3)
    images = [X[:32], X[32:]]

    def kl(graph):
        q = pt2e.quantize_pt2e(graph, X[:1], images, "minmax")
        with torch.no_grad():
            return nn.functional.kl_div(q(X).log_softmax(1), model(X).log_softmax(1), log_target=True,
                                        reduction="batchmean").item()

    before = {k: v.clone() for k, v in model.state_dict().items()}
    same = qat.finetune(model, X[:1], images, method="minmax", steps=0)
    reference = pt2e.export_graph(model, X[:1])
    assert isinstance(same, torch.fx.GraphModule)
    assert all(torch.equal(p, dict(reference.named_parameters())[k]) for k, p in same.named_parameters())
    tuned = qat.finetune(model, X[:1], images, method="minmax", steps=20, lr=1e-4, seed=0)
    moved = {k: (p - dict(same.named_parameters())[k]).abs().max().item() for k, p in tuned.named_parameters()}
    assert all(0 < d < 20 * 1e-4 for d in moved.values()), moved      # each moved, by at most ~lr per step
    assert kl(tuned) < 2 * kl(same)                                   # and the int8 model still works
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())   # model not modified


def test_bad_input():
    model, x = tiny(), data(2, 0)
    with pytest.raises(ValueError, match="'steps' parameter of finetune"):
        qat.finetune(model, x[:1], [x], steps=-1)
    with pytest.raises(ValueError, match="'lr' parameter of finetune"):
        qat.finetune(model, x[:1], [x], lr=0.0)
    with pytest.raises(ValueError, match="'method' parameter of finetune"):
        qat.finetune(model, x[:1], [x], method="adaround")
    with pytest.raises(TypeError, match="'calibration' parameter of finetune"):
        qat.finetune(model, x[:1], None)
    with pytest.raises(TypeError, match="'prepared' parameter of fake_quant_graph"):
        qat.fake_quant_graph(model)
