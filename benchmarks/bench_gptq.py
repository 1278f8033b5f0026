"""GPTQ speed and quality: labkit.gptq vs ONNX Runtime's GPTQ (MatMulNBitsQuantizer + GPTQWeightOnlyQuantConfig).

    .venv/bin/python benchmarks/bench_gptq.py [--tokens 16384] [--threads 2] [--bits 4] [--group-size 128]

The layers are those of labkit's ~1.8M-parameter GPT (4 blocks × 192 wide): per block a
qkv Linear 192→576, an attention projection 192→192, an MLP 192→768 and 768→192 (16 Linears,
1.77M weights), with random weights and correlated random inputs (no trained model needed).
Prints, measured in the same run:
  - labkit: building H = XᵀX for every layer plus `gptq.quantize_weight` of all 16, in seconds,
    against the goal "GPTQ of the whole GPT ≤ 30 s on 2 cores";
  - ONNX Runtime: `MatMulNBitsQuantizer(..., algo_config=GPTQWeightOnlyQuantConfig(...)).process()`
    on the same layers as one ONNX graph of MatMuls with the same calibration data (it also
    collects its own H from a session run), in seconds, and the ratio labkit / ORT;
  - the summed layer-output error ‖XWᵀ − XŴᵀ‖² of RTN, labkit GPTQ and ORT's quantized weights.
    ORT 1.32's GPTQ returns RTN's weights (its error update reads a column of the upper Cholesky
    factor, all zeros below the diagonal: see tests/test_gptq.py), so its error equals RTN's.
ONNX Runtime's quantization tools import `onnx_ir`; without it that half is skipped with a note.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import time

import numpy as np
import torch

from labkit import gptq, quantize

SHAPES = [("qkv", 576, 192), ("proj", 192, 192), ("fc1", 768, 192), ("fc2", 192, 768)]   # (out, in)


def make_layers(tokens: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    layers = []
    for b in range(4):
        for name, out, inp in SHAPES:
            A = torch.randn(inp, inp, generator=g) / inp ** 0.5
            X = torch.randn(tokens, inp, generator=g) @ (torch.eye(inp) + 2 * A)
            layers.append((f"h{b}.{name}", torch.randn(out, inp, generator=g) * 0.05, X))
    return layers


def run_labkit(layers, bits, group_size):
    """→ (seconds for all H, seconds for all quantize_weight, {name: (H, Ŵ)})."""
    t_h = t_q = 0.0
    out = {}
    for name, W, X in layers:
        t0 = time.perf_counter()
        H = X.T @ X                                   # float32, as the reference accumulates it
        t1 = time.perf_counter()
        out[name] = (H, gptq.quantize_weight(W, H, bits, group_size))
        t_h, t_q = t_h + t1 - t0, t_q + time.perf_counter() - t1
    return t_h, t_q, out


def run_ort(layers, bits, group_size, batch=256):
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization.calibrate import CalibrationDataReader
    from onnxruntime.quantization.matmul_nbits_quantizer import GPTQWeightOnlyQuantConfig, MatMulNBitsQuantizer
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    nodes, inputs, outputs, inits = [], [], [], []
    for name, W, X in layers:                       # one independent MatMul per layer, its own input
        inputs.append(helper.make_tensor_value_info(f"x_{name}", TensorProto.FLOAT, [None, W.shape[1]]))
        outputs.append(helper.make_tensor_value_info(f"y_{name}", TensorProto.FLOAT, [None, W.shape[0]]))
        inits.append(numpy_helper.from_array(W.T.numpy().copy(), f"w_{name}"))
        nodes.append(helper.make_node("MatMul", [f"x_{name}", f"w_{name}"], [f"y_{name}"], name=name))
    model = helper.make_model(helper.make_graph(nodes, "layers", inputs, outputs, inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    tokens = layers[0][2].shape[0]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{f"x_{n}": X[k:k + batch].numpy() for n, _, X in layers}
                                 for k in range(0, tokens, batch)])

        def get_next(self):
            return next(self.batches, None)

    t0 = time.perf_counter()
    q = MatMulNBitsQuantizer(model, bits=bits, block_size=group_size, is_symmetric=False,
                             algo_config=GPTQWeightOnlyQuantConfig(calibration_data_reader=Reader(),
                                                                   block_size=128))
    q.process()
    seconds = time.perf_counter() - t0
    import onnxruntime
    sess = onnxruntime.InferenceSession(q.model.model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = {f"x_{n}": X.numpy() for n, _, X in layers}
    ys = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    return seconds, {n: torch.from_numpy(np.asarray(ys[f"y_{n}"])).double() for n, _, _ in layers}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    layers = make_layers(args.tokens)
    n_params = sum(W.numel() for _, W, _ in layers)
    print(f"{len(layers)} Linear layers, {n_params / 1e6:.2f}M weights, {args.tokens} calibration tokens, "
          f"{args.bits}-bit g{args.group_size}, {args.threads} threads")
    t_h, t_q, out = run_labkit(layers, args.bits, args.group_size)
    t_lab = t_h + t_q
    e_rtn = sum(gptq.layer_error(W, quantize.groupwise(W, args.bits, args.group_size), out[n][0]) for n, W, _ in layers)
    e_lab = sum(gptq.layer_error(W, out[n][1], out[n][0]) for n, W, _ in layers)
    print(f"load average before: {os.getloadavg()[0]:.1f} (on a shared machine the seconds inflate; read the ratio)")
    print(f"labkit GPTQ: H {t_h:.2f} s + quantize_weight {t_q:.2f} s = {t_lab:.2f} s   "
          f"(goal ≤ 30 s on 2 cores: {'met' if t_lab <= 30 else 'NOT met'})")
    print(f"layer-output error, summed: RTN {e_rtn:.4g}   labkit GPTQ {e_lab:.4g} ({e_lab / e_rtn:.3f} × RTN)")
    if importlib.util.find_spec("onnx_ir") is None:
        print("ONNX Runtime GPTQ: skipped (its quantization tools import onnx_ir, not installed)")
        return
    t_ort, ys = run_ort(layers, args.bits, args.group_size)
    e_ort = sum(float(((ys[n] - X.double() @ W.double().T) ** 2).sum()) for n, W, X in layers)
    print(f"\nONNX Runtime GPTQ (MatMulNBitsQuantizer, H included): {t_ort:.2f} s   labkit / ORT time = {t_lab / t_ort:.2f}")
    print(f"ONNX Runtime GPTQ layer-output error {e_ort:.4g} ({e_ort / e_rtn:.3f} × RTN: its GPTQ update is a no-op)")


if __name__ == "__main__":
    main()
