"""labkit.ptq: fake-quantized models, calibration, QAT, weights-only quantization; bad input."""
import pytest
import torch
from torch import nn

from labkit import data, models, ptq, train
from labkit import quantize as Q


@pytest.fixture(scope="module")
def digits():
    return data.load_digits(seed=0)


def tiny(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


@pytest.fixture(scope="module")
def trained(digits):
    m = tiny()
    train.fit(m, digits.X_train, digits.y_train, epochs=15, lr=5e-3, max_shift=0, seed=0,
              progress=False)
    return m


def test_weights_are_fake_quantized_and_original_untouched(trained, digits):
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    qm = ptq.quantize_model(trained, bits=4, scheme="affine", granularity="channel",
                            a_bits=8, X_calib=digits.X_val)
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())
    layers = ptq.quant_layers(qm)
    assert [n for n, _ in layers] == ["1", "3"]
    for _, m in layers:
        assert torch.equal(m.weight(), Q.fake_quantize(m.layer.weight, 4, "affine", axis=0))
        assert len(torch.unique(m.weight()[0])) <= 16


def test_no_quantization_is_the_identity(trained, digits):
    qm = ptq.quantize_model(trained, bits=None, a_bits=None)
    assert torch.equal(train.predict(qm, digits.X_test), train.predict(trained, digits.X_test))


def test_int8_ptq_keeps_accuracy(trained, digits):
    fp = train.accuracy(trained, digits.X_test, digits.y_test)
    for method in ptq.CALIBRATIONS:
        qm = ptq.quantize_model(trained, 8, a_bits=8, calibration=method, X_calib=digits.X_val)
        assert abs(train.accuracy(qm, digits.X_test, digits.y_test) - fp) <= 0.01, method


def test_minmax_calibration_records_the_input_range(trained, digits):
    qm = ptq.quantize_model(trained, 8, a_bits=8, X_calib=digits.X_val)
    first = ptq.quant_layers(qm)[0][1]
    assert float(first.lo) == pytest.approx(float(digits.X_val.min()))
    assert float(first.hi) == pytest.approx(float(digits.X_val.max()))
    second = ptq.quant_layers(qm)[1][1]
    assert float(second.lo) == 0.0                           # after a ReLU


def test_activation_quantization_equals_torch(trained, digits):
    qm = ptq.quantize_model(trained, bits=None, a_bits=4, X_calib=digits.X_val)
    first = ptq.quant_layers(qm)[0][1]
    obs = torch.ao.quantization.MinMaxObserver(dtype=torch.quint8, quant_min=0, quant_max=15)
    obs(digits.X_val)
    s, z = obs.calculate_qparams()
    x = digits.X_test[:20].flatten(1)
    ref = nn.functional.linear(torch.fake_quantize_per_tensor_affine(x, float(s), int(z), 0, 15),
                               first.layer.weight, first.layer.bias)
    assert torch.allclose(first.eval()(x), ref, atol=1e-6)


def test_calibration_range_by_hand():
    v = torch.arange(101, dtype=torch.float32)
    assert ptq.calibration_range(v, 8, "minmax") == (0.0, 100.0)
    lo, hi = ptq.calibration_range(v, 8, "percentile", percentile=90)
    assert (lo, hi) == pytest.approx((10.0, 90.0))
    # one outlier: the MSE range clips it, and its error is never above min-max's
    w = torch.cat([torch.rand(5000, generator=torch.Generator().manual_seed(0)),
                   torch.tensor([10.0])])
    lo, hi = ptq.calibration_range(w, 4, "mse")
    assert hi < 5

    def err(lo, hi):
        s, z = Q.qparams(lo, hi, 4)
        return float(((Q.fake_quantize(w, 4, scale=s, zero_point=z) - w) ** 2).mean())
    assert err(lo, hi) <= err(*ptq.calibration_range(w, 4, "minmax"))


def test_qat_trains_through_the_ste(trained, digits):
    qm = ptq.quantize_model(trained, bits=2, a_bits=8, X_calib=digits.X_val)
    before = train.accuracy(qm, digits.X_test, digits.y_test)
    w0 = ptq.quant_layers(qm)[0][1].layer.weight.detach().clone()
    lo0 = float(ptq.quant_layers(qm)[1][1].hi)
    train.fit(qm, digits.X_train, digits.y_train, epochs=8, lr=2e-3, max_shift=0, seed=0,
              progress=False)
    assert not torch.equal(w0, ptq.quant_layers(qm)[0][1].layer.weight)
    assert float(ptq.quant_layers(qm)[1][1].hi) != lo0      # the range follows training (EMA)
    assert train.accuracy(qm, digits.X_test, digits.y_test) > before


def test_quantize_weights_linear_and_kmeans(trained):
    km = ptq.quantize_weights(trained, 2, method="kmeans")
    for m in (km[1], km[3]):
        assert len(torch.unique(m.weight)) <= 4
    mixed = ptq.quantize_weights(trained, {"1": 3})
    assert torch.equal(mixed[3].weight, trained[3].weight)
    assert torch.equal(mixed[1].weight, Q.fake_quantize(trained[1].weight, 3, "symmetric", 0))


def test_bad_input(trained, digits):
    with pytest.raises(ValueError, match="'bits' parameter of quantize_model"):
        ptq.quantize_model(trained, bits=0, a_bits=None)
    with pytest.raises(TypeError, match="'bits' parameter of quantize_model"):
        ptq.quantize_model(trained, bits=2.5, a_bits=None)
    with pytest.raises(ValueError, match="'granularity' parameter of quantize_model"):
        ptq.quantize_model(trained, granularity="row", a_bits=None)
    with pytest.raises(ValueError, match="'scheme' parameter of quantize_model"):
        ptq.quantize_model(trained, scheme="asym", a_bits=None)
    with pytest.raises(ValueError, match="'X_calib' parameter of quantize_model"):
        ptq.quantize_model(trained, a_bits=8)
    with pytest.raises(ValueError, match="'method' parameter of calibrate_"):
        ptq.quantize_model(trained, calibration="kl", X_calib=digits.X_val)
    with pytest.raises(ValueError, match="'percentile' parameter of calibrate_"):
        ptq.quantize_model(trained, calibration="percentile", percentile=20,
                           X_calib=digits.X_val)
    with pytest.raises(ValueError, match="'model' parameter of quantize_model"):
        ptq.quantize_model(nn.ReLU(), a_bits=None)
    with pytest.raises(ValueError, match="'bits' parameter of quantize_weights"):
        ptq.quantize_weights(trained, {"9": 4})
    with pytest.raises(ValueError, match="'method' parameter of quantize_weights"):
        ptq.quantize_weights(trained, 4, method="log")


def test_nan_in_calibration_is_refused(trained, digits):
    """A NaN range read as "not calibrated": the layer silently kept float activations."""
    X = digits.X_val.clone()
    X[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="'X' parameter of calibrate_ must be a tensor of finite values"):
        ptq.quantize_model(trained, X_calib=X)
    with pytest.raises(ValueError, match="'v' parameter of calibration_range must be a tensor of finite"):
        ptq.calibration_range(torch.tensor([0.0, float("inf")]), 8)
    with pytest.raises(ValueError, match="'v' parameter of calibration_range must be a non-empty"):
        ptq.calibration_range(torch.empty(0), 8)
    with pytest.raises(TypeError, match="'model' parameter of quant_layers"):
        ptq.quant_layers("model")


def test_granularity_is_quantize_axis():
    """The one mapping (documented in labkit.quantize): "tensor" ↔ axis=None, "channel" ↔ axis=0."""
    from labkit import quantize as Q

    assert ptq.AXES == {"tensor": None, "channel": 0} and set(ptq.AXES) == set(ptq.GRANULARITIES)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4))
    for granularity, axis in ptq.AXES.items():
        got = ptq.quantize_weights(model, 3, "affine", granularity)[0].weight
        assert torch.equal(got, Q.fake_quantize(model[0].weight, 3, "affine", axis))
        assert ptq.QuantLayer(nn.Linear(2, 2), granularity=granularity).axis == axis


def test_quantize_model_runs_a_given_kernel_forward_and_backward():
    """The kernel argument (notebook 04's my_fake_quantize drives QAT): torch's own per-channel
    kernel with STE gives the same model outputs and gradients as labkit's."""
    model = models.lenet300_100(seed=0)
    X = torch.randn(32, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    calls = []

    def torch_kernel(x, scale, zero_point, q_min, q_max):
        calls.append(tuple(scale.shape))
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point.int(), q_min, q_max) if scale.numel() == 1 \
            else torch.fake_quantize_per_channel_affine(x, scale.flatten(), zero_point.flatten().int(), 0, q_min, q_max)

    ours = ptq.quantize_model(model, 4, "symmetric", "channel", 8, "minmax", X)
    theirs = ptq.quantize_model(model, 4, "symmetric", "channel", 8, "minmax", X, kernel=torch_kernel)
    a, b = ours(X), theirs(X)
    assert torch.allclose(a, b, atol=1e-5) and calls
    a.sum().backward(), b.sum().backward()
    ga, gb = ours.get_submodule("1.layer").weight.grad, theirs.get_submodule("1.layer").weight.grad
    assert torch.allclose(ga, gb, atol=1e-5)
    with pytest.raises(TypeError, match="'kernel' parameter of quantize_model"):
        ptq.quantize_model(model, 4, kernel=3, a_bits=None)
