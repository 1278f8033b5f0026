"""labkit.count: hand counts of LeNet-5 and LeNet-300-100, sparse counts, latency, bad input."""
import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn

from labkit import count, models, prune


def test_lenet300_100_hand_count():
    m = models.lenet300_100()
    assert count.params(m) == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10 == 266610
    assert count.macs(m, (1, 28, 28)) == 784 * 300 + 300 * 100 + 100 * 10 == 266200
    assert count.macs(m, (784,)) == 266200


def test_lenet5_hand_count():
    m = models.lenet5()
    # conv1: 6 filters 1×5×5 on a padded 28×28 → 28×28 outputs; conv2: 16 filters 6×5×5 on 14×14 → 10×10
    conv1, conv2 = 28 * 28 * 6 * 1 * 25, 10 * 10 * 16 * 6 * 25
    fc = 400 * 120 + 120 * 84 + 84 * 10
    assert count.macs(m, (1, 28, 28)) == conv1 + conv2 + fc == 416520
    assert count.params(m) == (6 * 25 + 6) + (16 * 150 + 16) + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10) == 61706
    df = count.layers(m, (1, 28, 28))
    assert df["macs"].tolist() == [117600, 240000, 48000, 10080, 840]


def test_conv_stride_groups():
    m = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2, bias=False))
    # output 8×4×4 (from 8×8), each output: (4/2)·3·3 = 18 MACs
    assert count.macs(m, (4, 8, 8)) == 8 * 4 * 4 * 18
    assert count.params(m) == 8 * 2 * 9


@settings(max_examples=10, deadline=None)
@given(st.floats(0.0, 0.99))
def test_pruned_counts(amount):
    m = prune.magnitude_(models.lenet300_100(seed=0), amount)
    assert count.params(m) == 266610                                   # masks do not add parameters
    nz_weights = sum(int(torch.count_nonzero(x.weight)) for x in m if isinstance(x, nn.Linear))
    assert count.params(m, nonzero=True) == nz_weights + 410
    expected = sum(round(n * (1 - a)) for n, a in [(235200, amount), (30000, amount), (1000, amount)])
    assert count.macs(m, (784,), nonzero=True) == pytest.approx(expected, abs=3)
    assert count.macs(m, (784,)) == 266200                             # a dense kernel does them all


def test_benchmark_protocol_and_model_mode_restored():
    m = models.lenet5().train()
    before = torch.get_num_threads()
    r = count.benchmark(m, torch.randn(2, 1, 28, 28), threads=1, runs=5, warmup=1)
    assert m.training and torch.get_num_threads() == before
    assert r["runs"] == 5 and r["threads"] == 1 and 0 < r["min_ms"] <= r["median_ms"] <= r["p90_ms"]
    assert count.latency_ms(m, torch.randn(2, 1, 28, 28), runs=3) > 0


def test_timing_by_hand():
    r = count.timing([0.003, 0.001, 0.002, 0.004], threads=2)
    assert r == dict(median_ms=pytest.approx(2.5), p90_ms=pytest.approx(4.0), min_ms=pytest.approx(1.0), runs=4, threads=2)


def test_layer_bits_by_hand():
    fc = nn.Linear(8, 2)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[1.0, 0, 0, 0, 0, 0, 0, 2], [0, 0, 3, 0, 0, 0, 0, 0]]))
    bias = 32 * 2
    assert count.layer_bits(fc) == 32 * 16 + bias
    assert count.layer_bits(fc, bits=4) == 16 * 4 + 2 * 32 + bias                     # + a scale per row
    assert count.layer_bits(fc, bits=4, scheme="affine", granularity="tensor") == 8 * ((16 * 4 + 32 + 4 + 7) // 8) + bias
    assert count.layer_bits(fc, bits=2, codebook=True) == 16 * 2 + 4 * 32 + bias        # 2^2 fp32 centroids
    # non-zeros at flat positions 0, 7, 10: gaps 1, 7, 3 → with 2-bit indices (span 4) the gap of 7
    # needs one filler: 4 entries, each 32-bit value + 2-bit index
    assert count.layer_bits(fc, index_bits=2) == 4 * (32 + 2) + bias
    # 3-bit indices (span 8): no filler; the value stream is whole bytes (quantize.size_bytes)
    assert count.layer_bits(fc, bits=4, index_bits=3) == 8 * -(-(3 * 4 + 2 * 32) // 8) + 3 * 3 + bias
    # a codebook with fillers: the fillers' zero is a 5th symbol for 2^2 centroids → 3-bit codes
    assert count.layer_bits(fc, bits=2, codebook=True, index_bits=2) == 8 * -(-(4 * 3 + 4 * 32) // 8) + 4 * 2 + bias
    assert count.layer_bits(fc, bits=2, codebook=True, index_bits=3) == 8 * -(-(3 * 2 + 4 * 32) // 8) + 3 * 3 + bias
    m = nn.Sequential(fc, nn.ReLU(), nn.Linear(2, 3))
    assert count.model_bytes(m) == (count.layer_bits(fc) + 32 * 9) // 8
    assert count.model_bytes(m, {"0": 4}) == count.layer_bits(fc, 4) // 8 + 4 * 9
    with pytest.raises(ValueError, match="'bits' parameter of model_bytes"):
        count.model_bytes(m, {"7": 4})
    with pytest.raises(TypeError, match="'layer' parameter of layer_bits"):
        count.layer_bits(nn.ReLU())


def test_bad_input():
    m = models.lenet5()
    with pytest.raises(TypeError, match="'input_shape' parameter of layers"):
        count.macs(m, 28)
    with pytest.raises(TypeError, match="'model' parameter of params"):
        count.params("lenet")
    with pytest.raises(ValueError, match="'runs' parameter of benchmark"):
        count.benchmark(m, torch.randn(1, 1, 28, 28), runs=0)
    with pytest.raises(TypeError, match="'x' parameter of benchmark"):
        count.latency_ms(m, [1, 2])
    with pytest.raises(ValueError, match="'runs' parameter of time_calls must be an int in the range"):
        count.time_calls(lambda: None, -1, 0)
    with pytest.raises(TypeError, match="'call' parameter of time_calls must be a callable"):
        count.time_calls(10, 1, 0)
