"""labkit.adaround: the rectified sigmoid, BN folding, and AdaRound's rounding on small networks."""
import pytest
import torch
from torch import nn

from labkit.deploy import adaround


def small(seed=0):
    """conv → BN → ReLU6 → depthwise → BN → ReLU6 → 1×1 conv (linear) → BN: a MobileNetV2 block."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
                        nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16, bias=False), nn.BatchNorm2d(16),
                        nn.ReLU6(), nn.Conv2d(16, 8, 1, bias=False), nn.BatchNorm2d(8))
    for m in net:
        if isinstance(m, nn.BatchNorm2d):            # non-trivial running statistics
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return net.eval()


def test_rectified_sigmoid_and_its_inverse():
    assert adaround.h(torch.tensor(0.0)).item() == pytest.approx(0.5)
    assert adaround.h(torch.tensor([-10.0, 10.0])).tolist() == [0.0, 1.0]      # exactly 0 and 1: ζ, γ stretch σ
    rest = torch.tensor([0.01, 0.25, 0.5, 0.9])
    assert torch.allclose(adaround.h(adaround.h_inverse(rest)), rest, atol=1e-6)


def test_scales_by_hand():
    w = torch.tensor([[1.0, -2.54], [0.5, 0.25]])
    assert adaround.scales(w).flatten().tolist() == pytest.approx([2.54 / 127, 0.5 / 127])


def test_fold_bn_keeps_the_function_and_removes_batchnorm():
    net, x = small(), torch.randn(4, 3, 12, 12)
    folded = adaround.fold_bn(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.modules())          # the original is untouched
    with torch.no_grad():
        assert torch.allclose(folded(x), net(x), atol=1e-5)


def test_layers_in_run_order_with_their_clamps():
    layers = adaround._layers(adaround.fold_bn(small()))
    assert [c for _, c in layers] == [(0.0, 6.0), (0.0, 6.0), None]
    assert [tuple(l.weight.shape) for l, _ in layers] == [(16, 3, 3, 3), (16, 1, 3, 3), (8, 16, 1, 1)]


def test_patches_reproduce_the_convolution():
    g = torch.Generator().manual_seed(0)
    for conv in (nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.Conv2d(4, 4, 3, padding=1, groups=4),
                 nn.Conv2d(4, 6, 1)):
        x = torch.randn(2, 4, 7, 7)
        y = conv(x)
        pos = adaround._positions(conv, x, 30, g)
        got = adaround._apply(conv, adaround._patches(conv, x, pos), conv.weight)
        assert torch.allclose(got, y[pos[:, 0], :, pos[:, 1], pos[:, 2]], atol=1e-5)
    assert len(adaround._positions(nn.Conv2d(4, 6, 1), torch.randn(1, 4, 3, 3), 100, g)) == 9   # all there are


def test_adaround_weights_lie_on_the_same_grid_and_round_up_or_down():
    net, x = small(), torch.randn(16, 3, 12, 12)
    folded, rounded = adaround.fold_bn(net), adaround.adaround(net, x, iters=60, seed=0)
    for (a, _), (b, _) in zip(adaround._layers(folded), adaround._layers(rounded)):
        s = adaround.scales(a.weight)
        assert torch.allclose(adaround.scales(b.weight), s)                   # max|W_c| stays on ±127
        q = b.weight / s
        assert torch.allclose(q, q.round(), atol=1e-3) and q.abs().max() <= 127 + 1e-3
        ws = a.weight / s
        assert ((q.round() == ws.floor()) | (q.round() == ws.ceil())).all()   # up or down, nothing else
        assert torch.equal(b.bias, a.bias)                                     # biases are not touched


def test_adaround_lowers_each_layers_output_error():
    net, x = small(1), torch.randn(32, 3, 12, 12)
    rounded = adaround.adaround(net, x, iters=200, positions=2048, seed=0)
    errors = rounded.adaround_errors
    assert len(errors) == 3
    assert all(e["error_adaround"] <= e["error_nearest"] for e in errors)
    # the last layer makes up for the rounding of the two before it (x̃ ≠ x): measured 3.97e-6 vs 7.02e-6
    assert errors[-1]["error_adaround"] < 0.7 * errors[-1]["error_nearest"]


def test_adaround_is_seeded_and_leaves_the_model():
    net, x = small(), torch.randn(8, 3, 12, 12)
    before = [p.clone() for p in net.parameters()]
    a, b = adaround.adaround(net, x, iters=20, seed=3), adaround.adaround(net, x, iters=20, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before))


def test_bad_input():
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"The 'iters' parameter of adaround must be an int in the range \[0, inf\]"):
        adaround.adaround(small(), x, iters=-1)
    with pytest.raises(TypeError, match="'model' parameter of adaround must be an nn.Sequential or have a 'features' "
                                        "nn.Sequential. Got 'Linear' instead."):
        adaround.adaround(nn.Linear(2, 2), x)
    with pytest.raises(TypeError, match="'calibration' parameter of adaround"):
        adaround.adaround(small(), x.numpy())


def test_nan_weights_and_inputs_are_refused():
    """A NaN weight would be its channel's max|W|: every scale of that channel NaN."""
    w = torch.tensor([[1.0, float("nan")], [0.5, 0.25]])
    with pytest.raises(ValueError, match="'w' parameter of scales must be a tensor of finite values"):
        adaround.scales(w)
    with pytest.raises(ValueError, match="'w' parameter of scales must be a non-empty weight"):
        adaround.scales(torch.empty(0))                     # was an IndexError
    with pytest.raises(ValueError, match="'V' parameter of h must be a tensor without NaN"):
        adaround.h(torch.tensor([0.0, float("nan")]))
    assert adaround.h(torch.tensor([-float("inf"), float("inf")])).tolist() == [0.0, 1.0]
    conv = nn.Conv2d(3, 4, 3)
    x = torch.randn(2, 3, 8, 8)
    x_nan = x.clone()
    x_nan[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="'x_q' parameter of round_layer must be a tensor of finite values"):
        adaround.round_layer(conv, x, x_nan)
    with pytest.raises(ValueError, match="'x' parameter of round_layer must be a non-empty batch"):
        adaround.round_layer(conv, x[0], x[0])
    with pytest.raises(TypeError, match="'layer' parameter of round_layer must be an nn.Conv2d or nn.Linear"):
        adaround.round_layer(nn.ReLU(), x, x)
