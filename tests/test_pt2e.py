"""labkit.pt2e: calibration observers, ReLU6-aware ranges, empirical bias correction."""
import functools

import executorch  # noqa: F401  (pinned in pyproject.toml: missing, it must fail here, not skip)
import pytest
import torch
import torchao  # noqa: F401  (pinned in pyproject.toml: missing, it must fail here, not skip)
from torch import nn

from labkit.deploy import pt2e
from labkit.deploy._fx import in_modules, op


def block(seed=0, gain=1.0):
    """conv 3×3 → BN → ReLU6 → depthwise 3×3 → BN → ReLU6 → 1×1 (linear bottleneck) → pool → linear.
    `gain` scales the first conv, so its pre-activations run far outside ReLU6's [0, 6]."""
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU6(),
                      nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16), nn.ReLU6(),
                      nn.Conv2d(16, 8, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
    with torch.no_grad():
        m[0].weight *= gain
        for bn in (m[1], m[4]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2)
            bn.bias.uniform_(-0.5, 0.5)
    return m


def data(n, seed):
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def sqnr(ref, out):
    return 10 * torch.log10(ref.pow(2).sum() / (ref - out).pow(2).sum()).item()


def test_percentile_observer_by_hand():
    obs = pt2e.observers()["percentile"]()
    x = torch.arange(10001, dtype=torch.float32)           # quantiles 1e-4 and 1 − 1e-4: 1 and 9999
    assert obs(x) is x
    assert obs.min_val.item() == 1.0 and obs.max_val.item() == 9999.0
    obs(x + 5)                                               # running min of lows, max of highs
    assert obs.min_val.item() == 1.0 and obs.max_val.item() == 10004.0
    big = torch.arange(3 << 20, dtype=torch.float32)         # > 2^20 values: an even sample, no error
    obs2 = pt2e.observers()["percentile"]()
    obs2(big)
    assert 0 <= obs2.min_val.item() < 1e-3 * big.numel() and obs2.max_val.item() > 0.999 * big.numel()


@pytest.mark.parametrize("method", pt2e.METHODS)
def test_clamped_observer_sees_the_clamped_values(method):
    obs = pt2e.observers()[method]()
    obs.clamp = (0.0, 6.0)
    x = torch.linspace(-20, 30, 10001)
    assert torch.equal(obs(x), x)                            # the tensor passes unchanged
    lo, hi = obs.min_val.item(), obs.max_val.item()
    assert 0.0 <= lo <= 0.01 and 5.5 <= hi <= 6.0


def test_clamp_observed_ranges_marks_each_conv_before_relu6():
    prepared = pt2e.prepare(block(), data(1, 0), "minmax", fuse_relu6=False)
    assert pt2e.clamp_observed_ranges(prepared) == 2        # the two conv → ReLU6 pairs, not the 1×1
    clamps = [m.clamp for m in prepared.modules() if getattr(m, "clamp", None) is not None]
    assert clamps == [(0.0, 6.0), (0.0, 6.0)]


def test_relu6_aware_ranges_cut_the_error():
    """XNNPACK's quantizer as shipped quantizes the conv output over its whole pre-activation range,
    and the ReLU6 output shares that step; observing the conv output as ReLU6 clamps it keeps the
    function and gives a step of 6/255."""
    model, X = block(gain=8.0)[:3], data(64, 1)                # conv → BN → ReLU6
    with torch.no_grad():
        pre = model[1](model[0](X))
        ref = model(X)
    assert pre.min() < -10 and pre.max() > 20                 # the case the fix is for
    stock = pt2e.quantize_pt2e(model, X[:1], [X], fuse_relu6=False)
    fused = pt2e.quantize_pt2e(model, X[:1], [X], fuse_relu6=True)
    with torch.no_grad():
        out_stock, out_fused = stock(X), fused(X)
    step = lambda out: out.unique().diff().min().item()       # the smallest step between output levels
    assert step(out_fused) == pytest.approx(6 / 255, rel=0.02)
    assert step(out_stock) > 4 * 6 / 255                       # the shipped quantizer: a coarser step
    assert sqnr(ref, out_fused) > sqnr(ref, out_stock) + 3     # 4.6 dB here; the rest is the input's and weights' error


def calibrated(model, X, method="minmax"):
    """(the float weights W, the int8 graph) of `model` calibrated on X; W is read before
    convert_pt2e, which changes the prepared graph."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    prepared = pt2e.prepare(model, X[:1], method)
    with torch.no_grad():
        prepared(X)
    W = pt2e._float_weights(prepared)
    return W, convert_pt2e(prepared)


def test_bias_correction_by_hand():
    """One Linear(2 → 1), W = [0.3, 1.0], b = 0.5. Per-channel weights: s = 1.0 / 127, W̃ = [38/127, 1],
    ε = W̃ − W = [38/127 − 0.3, 0] = [−0.00078740, 0]. The inputs 0, 2.55, 1.0 (first feature) lie on
    the input grid s_x = 2.55 / 255 = 0.01, so x̃ = x and E[x̃_0] = 3.55 / 3. The correction is
    b ← b − ε·E[x̃] = 0.5 + 0.00078740 · 1.18333 = 0.50093176."""
    model = nn.Sequential(nn.Linear(2, 1)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.3, 1.0]]))
        model[0].bias.fill_(0.5)
    X = torch.tensor([[0.0, 2.55], [2.55, 0.0], [1.0, 1.0]])
    weights, quantized = calibrated(model, X)
    bias = [b for k, b in quantized.state_dict().items() if k.endswith("bias")][0]
    assert bias.item() == pytest.approx(0.5)
    assert pt2e.correct_biases(quantized, weights, [X]) == 1
    assert bias.item() == pytest.approx(0.5 + (0.3 - 38 / 127) * 3.55 / 3, abs=1e-7)
    assert bias.item() == pytest.approx(0.50093176, abs=1e-7)


def test_bias_correction_matches_the_channel_means_layer_by_layer():
    """After correction, every layer's output mean with the int8 weights equals its mean with the
    float weights, on the input x̃ that layer sees in the corrected int8 model:
    E[W̃ x̃ + b̃] = E[W x̃ + b], channel by channel — which holds for the later layers only if the
    correction was applied in order, each layer seeing the corrected ones before it."""
    import torch.nn.functional as F

    model, X = block(gain=3.0), data(32, 2)
    W, quantized = calibrated(model, X)
    b0 = [v.clone() for k, v in quantized.state_dict().items() if k.endswith("bias")]

    def gaps(g):
        """max |E[W̃ x̃ + b̃] − E[W x̃ + b]| of each layer, running g on X."""
        out, biases = [], iter(b0)

        class Gap(torch.fx.Interpreter):
            def run_node(self, node):
                if op(node) in ("conv2d", "linear"):
                    (x, w_q, b_q, *conv_args), _ = self.fetch_args_kwargs_from_env(node)
                    w, b = W[len(out)], next(biases)

                    def f(w, b):
                        return F.conv2d(x, w, b, *conv_args) if x.dim() == 4 else F.linear(x, w, b)

                    y_q, y = f(w_q, b_q), f(w, b)
                    dims = [0, 2, 3] if y.dim() == 4 else [0]
                    out.append((y_q.mean(dims) - y.mean(dims)).abs().max().item())
                return super().run_node(node)

        Gap(g).run(X)
        return out

    with torch.no_grad():
        before = gaps(quantized)
        weights = {k: v.clone() for k, v in quantized.state_dict().items() if "bias" not in k}
        assert pt2e.correct_biases(quantized, W, [X]) == 4
        after = gaps(quantized)
    assert len(before) == len(after) == 4
    assert max(before) > 1e-3                                   # the rounding shifted the means
    assert max(after) < 1e-5
    assert all(torch.equal(v, quantized.state_dict()[k]) for k, v in weights.items())   # only biases move
    with pytest.raises(RuntimeError, match="different layers"):
        pt2e.correct_biases(quantized, W + W, [X])


def test_bias_correction_leaves_the_clipped_outliers_alone():
    """A percentile range clips the rare large inputs on purpose. The correction is the weights'
    only, so it does not move every output to pay for the clipped few: a model whose weights are
    on the int8 grid already (W̃ = W) gets no correction at all, however much its input is clipped."""
    model = nn.Sequential(nn.Linear(4, 3)).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.randint(-127, 128, (3, 4), generator=torch.Generator().manual_seed(1)) / 127.0)
        model[0].weight[:, 0] = 1.0                              # max |W_c| = 1: s_c = 1/127, W on the grid
    X = torch.randn(20000, 4, generator=torch.Generator().manual_seed(0))
    X[:5] += 50                                                  # outliers that the 99.99 % quantile clips
    W, quantized = calibrated(model, X, "percentile")
    bias = [b for k, b in quantized.state_dict().items() if k.endswith("bias")][0]
    b0 = bias.clone()
    assert pt2e.correct_biases(quantized, W, [X]) == 1
    assert torch.equal(bias, b0)


def test_bias_correction_keeps_the_model_close_on_new_data():
    model, X, Y = block(gain=3.0), data(64, 3), data(64, 4)
    q = pt2e.quantize_pt2e(model, X[:1], [X], bias_correction=True)
    with torch.no_grad():
        assert sqnr(model(Y), q(Y)) > 20


def _int8_weights(quantized):
    """The int8 weight tensors of a converted graph, in graph order."""
    return [getattr(quantized, n.args[0].target) for n in quantized.graph.nodes
            if n.op == "call_function" and "dequantize_per_channel" in str(n.target)]


def test_adaround_integers_are_the_programs_integers():
    from labkit.deploy import adaround

    model, X = block(gain=3.0), data(32, 5)
    q = pt2e.quantize_pt2e(model, X[:1], [X], adaround=True)
    rounded = adaround.adaround(model, X)                      # the same call quantize_pt2e makes
    layers = [m for m, _ in adaround._layers(rounded)]
    got = _int8_weights(q)
    assert len(got) == len(layers) == 4
    for layer, w8 in zip(layers, got):
        assert torch.equal(w8.to(torch.float32), (layer.weight / adaround.scales(layer.weight)).round())
    plain = _int8_weights(pt2e.quantize_pt2e(model, X[:1], [X]))
    assert any(not torch.equal(a, b) for a, b in zip(got, plain))  # AdaRound did change some integers
    with torch.no_grad():
        assert sqnr(model(X), q(X)) > 20


def test_an_exported_graph_quantizes_like_its_model():
    model, X = block(), data(16, 6)
    once = pt2e.export_graph(model, X[:1])
    a, b = pt2e.quantize_pt2e(once, X[:1], [X], method="percentile"), pt2e.quantize_pt2e(model, X[:1], [X], method="percentile")
    with torch.no_grad():
        assert torch.equal(a(X), b(X))
    assert len(list(once.graph.nodes)) < len(list(a.graph.nodes))   # `once` itself was not annotated


def test_float_modules_stay_fp32_and_the_rest_is_int8():
    from labkit.deploy import adaround

    model, X = block(gain=3.0), data(32, 7)
    g = pt2e.export_graph(model, X[:1])
    assert [op(n) for n in g.graph.nodes if op(n) and in_modules(n, ("0", "2"))] == ["conv2d", "hardtanh"]
    assert [op(n) for n in g.graph.nodes if op(n) and in_modules(n, ("3",))] == ["conv2d"]    # "3" is not "30"
    for ada in (False, True):
        q = pt2e.quantize_pt2e(model, X[:1], [X], float_modules=("0", "1", "2"), adaround=ada, bias_correction=ada)
        convs = [n for n in q.graph.nodes if op(n) == "conv2d"]
        first = convs[0]
        assert first.args[0].op == "placeholder"                       # the image is not quantized
        assert first.args[1].op == "get_attr"                          # nor the first conv's weights
        torch.testing.assert_close(functools.reduce(getattr, first.args[1].target.split('.'), q), adaround.fold_bn(model)[0].weight,
                                   rtol=0, atol=0)                     # float W (BN folded), not rounded
        assert len(_int8_weights(q)) == 3                              # dw conv, 1×1 conv, linear: int8
        assert op(convs[1].args[0]) == "dequantize_per_tensor"         # the second conv reads int8
        plain = pt2e.quantize_pt2e(model, X[:1], [X], adaround=ada, bias_correction=ada)
        assert len(_int8_weights(plain)) == 4
        with torch.no_grad():
            ref, out = model(X), q(X)
        assert sqnr(ref, out) > 20, f"adaround={ada}: SQNR {sqnr(ref, out):.1f} dB"


def test_bad_input():
    model, x = block(), data(1, 0)
    with pytest.raises(TypeError, match=r"^The 'fuse_relu6' parameter of quantize_pt2e must be a bool\. Got 1 instead\.$"):
        pt2e.quantize_pt2e(model, x, [x], fuse_relu6=1)    # the value's repr: 1, not the str '1'

    with pytest.raises(TypeError, match="'bias_correction' parameter of quantize_pt2e must be a bool"):
        pt2e.quantize_pt2e(model, x, [x], bias_correction="yes")
    with pytest.raises(TypeError, match="'adaround' parameter of quantize_pt2e must be a bool"):
        pt2e.quantize_pt2e(model, x, [x], adaround=1)
    with pytest.raises(ValueError, match="'method' parameter of xnnpack_config"):
        pt2e.xnnpack_config("entropy")
    with pytest.raises(TypeError, match="'calibration' parameter of quantize_pt2e"):
        pt2e.quantize_pt2e(model, x, None)
    bad = x.clone()
    bad.view(-1)[0] = float("nan")                        # would be an observed range
    with pytest.raises(ValueError, match="'calibration' parameter of quantize_pt2e must be a tensor of finite"):
        pt2e.quantize_pt2e(model, x, [x, bad])
    with pytest.raises(TypeError, match="'prepared' parameter of clamp_observed_ranges"):
        pt2e.clamp_observed_ranges(model)
    with pytest.raises(TypeError, match="'quantized' parameter of correct_biases"):
        pt2e.correct_biases(model, [], [x])
    with pytest.raises(TypeError, match="'model' parameter of prepare"):
        pt2e.prepare(None, x)
    with pytest.raises(TypeError, match=r"^The 'float_modules' parameter of quantize_pt2e must be a tuple of submodule names"):
        pt2e.quantize_pt2e(model, x, [x], float_modules="0")        # a str is not a tuple of names
    with pytest.raises(ValueError, match=r"^The 'float_modules' parameter of quantize_pt2e must be names of the model's submodules.*Got 'features\.0' instead\.$"):
        pt2e.quantize_pt2e(model, x, [x], float_modules=("features.0",))
