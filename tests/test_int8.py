"""labkit.int8: a real int8 model on torch's quantized CPU kernels; bad input."""
import pytest
import torch
from torch import nn

from labkit import count, data, int8, models, train
from labkit import quantize as Q


@pytest.fixture(scope="module")
def setup():
    d = data.load_digits(seed=0)
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    train.fit(m, d.X_train, d.y_train, epochs=15, lr=5e-3, max_shift=0, seed=0, progress=False)
    return d, m, int8.to_int8(m, d.X_val)


def test_int8_model_runs_on_integer_kernels(setup):
    d, m, qm = setup
    fused = qm.model[1]                                       # Linear + ReLU fused, int8
    assert "quantized" in type(fused).__module__
    assert fused.weight().dtype == torch.qint8
    q, _, _ = Q.quantize(m[1].weight, 8, "symmetric", axis=0)    # labkit's numbers = torch's
    assert torch.equal(fused.weight().int_repr(), q)
    fp = train.accuracy(m, d.X_test, d.y_test)
    assert abs(train.accuracy(qm, d.X_test, d.y_test) - fp) <= 0.02
    assert type(m[1]) is nn.Linear and m[1].weight.dtype == torch.float32   # original intact


def test_serialized_size_about_four_times_smaller():
    m = models.lenet300_100()
    x = torch.randn(64, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    qm = int8.to_int8(m, x)
    ratio = int8.serialized_bytes(m) / int8.serialized_bytes(qm)
    assert 3.5 < ratio < 4.1, ratio
    assert count.latency_ms(qm, x[:1], runs=3) > 0                   # the one timer runs torch's int8 kernels


def test_bad_input(setup):
    d, m, _ = setup
    with pytest.raises(ValueError, match="'engine' parameter of to_int8"):
        int8.to_int8(m, d.X_val, engine="tpu")
    with pytest.raises(TypeError, match="'X_calib' parameter of to_int8"):
        int8.to_int8(m, d.X_val.long())
    with pytest.raises(TypeError, match="'model' parameter of serialized_bytes"):
        int8.serialized_bytes({})
