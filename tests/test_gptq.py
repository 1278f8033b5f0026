"""labkit.gptq: layers where the optimum is known, GPTQ against RTN on correlated inputs, act-order
and groups, and a cross-check against ONNX Runtime's GPTQ (its numpy port of the reference code)."""
import importlib.util
import logging

import numpy as np
import pytest
import torch

from labkit import gptq
from labkit import quantize as Q

HAS_ONNX_IR = importlib.util.find_spec("onnx_ir") is not None      # ORT's quantization tools need it


def _layer(seed, n=1024, d_in=192, d_out=96, corr=2.0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d_in, d_in, generator=g) / d_in ** 0.5
    X = torch.randn(n, d_in, generator=g) @ (torch.eye(d_in) + corr * A)     # correlated inputs
    W = torch.randn(d_out, d_in, generator=g) * 0.05
    return W, X, X.T @ X


def _out_err(W, W_hat, X):
    return float(((X.double() @ (W.double() - W_hat.double()).T) ** 2).sum())


# ------------------------------------------------------------------ known optima
@pytest.mark.parametrize("g,scheme", [(None, "affine"), (32, "symmetric"), (64, "restricted")])
def test_diagonal_hessian_gives_exactly_rtn(g, scheme):
    """Independent inputs: no column can compensate another, the best is round-to-nearest."""
    W, _, _ = _layer(0)
    W = W.double()                                       # GPTQ computes in float64: the same ties
    H = torch.diag(torch.rand(W.shape[1], generator=torch.Generator().manual_seed(1)) + 0.5)
    assert torch.equal(gptq.quantize_weight(W, H, 4, g, scheme, block_size=48), Q.groupwise(W, 4, g, scheme))


def test_one_column_is_rtn_and_8_bits_is_nearly_lossless():
    W, X, H = _layer(2)
    W = W.double()
    assert torch.equal(gptq.quantize_weight(W[:, :1], H[:1, :1], 3, None), Q.groupwise(W[:, :1], 3, None))
    W8, W4 = gptq.quantize_weight(W, H, 8, 128), gptq.quantize_weight(W, H, 4, 128)
    assert _out_err(W, W8, X) / float((X.double() @ W.T).pow(2).sum()) < 1e-4
    assert _out_err(W, W8, X) < _out_err(W, W4, X) / 100             # ≈ (2^4)² = 256× less


def test_layer_error_from_h_equals_the_output_error():
    W, X, H = _layer(3)
    W_hat = Q.groupwise(W, 3, 32)
    assert gptq.layer_error(W, W_hat, H) == pytest.approx(_out_err(W, W_hat, X), rel=1e-5)


def test_inputs_are_not_modified_and_dtype_is_kept():
    W, _, H = _layer(4)
    W0, H0 = W.clone(), H.clone()
    out = gptq.quantize_weight(W.double(), H, 4, 64)
    assert torch.equal(W, W0) and torch.equal(H, H0) and out.dtype == torch.float64


# ------------------------------------------------------------------ GPTQ beats RTN
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("bits,g,scheme", [(4, 128, "affine"), (3, 32, "symmetric"), (4, None, "restricted")])
def test_gptq_output_error_strictly_below_rtn(seed, bits, g, scheme):
    W, X, H = _layer(seed)
    e = gptq.compare_rtn(W, H, bits, g, scheme)
    assert e["gptq"] < 0.8 * e["rtn"], e
    # every Ŵ entry is on its group's grid: at most 2^bits levels per row and group
    W_hat = gptq.quantize_weight(W, H, bits, g, scheme)
    grp = W_hat[:, :32] if g else W_hat
    assert max(len(r.unique()) for r in grp) <= 2 ** bits


def test_dead_inputs_get_zero_weight():
    W, X, _ = _layer(5)
    X[:, [3, 50]] = 0
    W_hat = gptq.quantize_weight(W, X.T @ X, 4, 64)
    assert not W_hat[:, [3, 50]].any() and W_hat[:, 4].any()


def test_act_order_and_groups_behave():
    errs = {}
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        W, X, _ = _layer(seed)
        X = X * torch.logspace(-1, 1, X.shape[1])[torch.randperm(X.shape[1], generator=g)]   # uneven activity
        H = X.T @ X
        for ao in (False, True):
            for gs in (None, 64, 16):
                errs.setdefault((ao, gs), []).append(gptq.layer_error(W, gptq.quantize_weight(W, H, 3, gs, act_order=ao), H))
    mean = {k: sum(v) / 3 for k, v in errs.items()}
    assert mean[True, None] < mean[False, None]           # the paper's act-order gain
    for ao in (False, True):
        assert mean[ao, 16] < mean[ao, 64] < mean[ao, None]
    W, _, H = _layer(9)
    a = gptq.quantize_weight(W, H, 4, None, block_size=7)   # the lazy batch changes no result
    b = gptq.quantize_weight(W, H, 4, None, block_size=192)
    assert torch.allclose(a, b, atol=1e-6)


def test_not_positive_definite_is_named():
    W, _, _ = _layer(0, d_in=8)
    H = -torch.eye(8)
    with pytest.raises(ValueError, match="'H' parameter of quantize_weight"):
        gptq.quantize_weight(W, H)
    with pytest.raises(ValueError, match="'H' parameter of quantize_weight"):
        gptq.quantize_weight(W, torch.eye(7))


# ------------------------------------------------------------------ ONNX Runtime
@pytest.mark.skipif(not HAS_ONNX_IR, reason="onnxruntime's quantization tools import onnx_ir (not installed)")
def test_onnxruntime_gptq_with_its_cholesky_factor_fixed_equals_labkit(monkeypatch):
    """ORT 1.32's GPTQ (neural_compressor/weight_only.py) propagates the error with Hinv[i:, i], a
    column of the *upper* Cholesky factor (zero below the diagonal): it never updates a weight and
    returns RTN exactly. Handing it the lower factor (the transposition it misses) makes it the
    reference algorithm, and then it agrees with labkit's to float rounding at ties."""
    from onnxruntime.quantization.neural_compressor import weight_only
    W, X, H = _layer(6, n=512, d_in=192, d_out=64)
    ort = lambda: torch.from_numpy(np.ascontiguousarray(weight_only.gptq(     # noqa: E731
        W.T.numpy().copy(), H.double().numpy().copy(), 4, 128, "asym", 128).T)).float()
    assert torch.allclose(ort(), Q.groupwise(W, 4, 128), atol=1e-6)      # as shipped: RTN
    chol = np.linalg.cholesky
    monkeypatch.setattr(weight_only.np.linalg, "cholesky", lambda a: chol(a).T)
    fixed, ours = ort(), gptq.quantize_weight(W, H, 4, 128)
    assert float((fixed - ours).abs().gt(1e-5).float().mean()) < 0.01
    assert gptq.layer_error(W, fixed, H) == pytest.approx(gptq.layer_error(W, ours, H), rel=0.01)


@pytest.mark.skipif(not HAS_ONNX_IR, reason="onnxruntime's quantization tools import onnx_ir (not installed)")
def test_onnxruntime_matmulnbits_gptq_model_output_error_is_rtns():
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization.calibrate import CalibrationDataReader
    from onnxruntime.quantization.matmul_nbits_quantizer import GPTQWeightOnlyQuantConfig, MatMulNBitsQuantizer
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    W, X, H = _layer(7, n=512, d_in=192, d_out=128)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "layer",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 192])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 128])],
                              [numpy_helper.from_array(W.T.numpy().copy(), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": X[k:k + 128].numpy()} for k in range(0, 512, 128)])

        def get_next(self):
            return next(self.batches, None)

    q = MatMulNBitsQuantizer(model, bits=4, block_size=128, is_symmetric=False,
                             algo_config=GPTQWeightOnlyQuantConfig(calibration_data_reader=Reader(), block_size=128))
    q.process()
    assert [n.op_type for n in q.model.model.graph.node] == ["MatMulNBits"]
    sess = onnxruntime.InferenceSession(q.model.model.SerializeToString(), providers=["CPUExecutionProvider"])
    Y = torch.from_numpy(sess.run(None, {"x": X.numpy()})[0]).double()
    ort_err = float(((Y - X.double() @ W.double().T) ** 2).sum())
    rtn = gptq.layer_error(W, Q.groupwise(W, 4, 128), H)
    ours = gptq.layer_error(W, gptq.quantize_weight(W, H, 4, 128), H)
    assert ort_err == pytest.approx(rtn, rel=1e-3) and ours < 0.8 * ort_err
