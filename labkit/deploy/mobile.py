"""On-device inference: int8 post-training quantization, export, load, benchmark.

ExecuTorch (https://pytorch.org/executorch) runs a `.pte` program; its XNNPACK delegate runs the
convolutions with int8 or fp32 kernels. ONNX Runtime runs an `.onnx` file.

    export(model, "m.pte", x, quantize="int8", calibration=[batch, ...]) → load("m.pte") → f(x)

For `.pte` the int8 model is `labkit.pt2e.quantize_pt2e`'s (per-channel int8 weights, per-tensor
int8 activations, ReLU6-aware ranges, optional bias correction and AdaRound): the lowered program
computes what that in-process model computes, and `labkit.xnnpack.emulate` of it computes the same
outputs bit for bit (XNNPACK's integer rounding, in PyTorch). For `.onnx` it is ONNX Runtime's
static QDQ quantizer with uint8 weights and activations: on x86 CPUs without VNNI, ONNX Runtime's
int8 kernels for uint8 activations × int8 weights multiply with VPMADDUBSW, whose int16 pair sums
saturate; U8U8 kernels do not (tests/test_mobile.py checks that the optimized int8 session computes
what the same QDQ graph run op by op computes). See ONNX Runtime's quantization docs, and
benchmarks/bench_mobile_latency.py for each program's size, latency and agreement with fp32.
`benchmark` times a program in its runtime, `count.benchmark` the PyTorch model it came from.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..validate import check_bool, check_choice, check_int, check_module, check_tensor, message
from ..count import time_calls, timing
from ..prune import clone
from ._fx import need as _need
from .pt2e import INSTALL, METHODS, check_calibration, quantize_pt2e, quiet_pytree, xnnpack_config  # noqa: F401
from .xnnpack import Emulated

RUNTIMES = {".pte": "executorch", ".onnx": "onnxruntime"}


# ---------------------------------------------------------------- export
def _runtime_of(path, func: str) -> tuple[Path, str]:
    """(Path, runtime) of a program path; the suffix picks the runtime (.pte or .onnx)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(message("path", func, "a str or os.PathLike", type(path).__name__))
    path = Path(path)
    runtime = RUNTIMES.get(path.suffix)
    if runtime is None:
        raise ValueError(message("path", func, "a file name ending in .pte or .onnx", str(path)))
    return path, runtime


def export(model: nn.Module, path, example_input: torch.Tensor, quantize: str | None = None,
           calibration=None, method: str = "minmax", bias_correction: bool = False,
           adaround: bool = False) -> Path:
    """Write `model` as an on-device program for inputs shaped like `example_input` and return
    its path. The suffix picks the runtime: `.pte` → ExecuTorch with the XNNPACK delegate,
    `.onnx` → ONNX Runtime. quantize="int8" quantizes first (needs `calibration`, a list of
    input batches): PT2E + XNNPACK quantizer for .pte (`method` as in `quantize_pt2e`); ONNX
    Runtime's static QDQ quantizer, per-channel weights, for .onnx ("minmax" or "percentile").
    `bias_correction` and `adaround` (.pte only): see `labkit.pt2e`.
    `model` may also be the GraphModule `quantize_pt2e` returns, or `xnnpack.emulate`'s module of
    it (then quantize=None)."""
    check_module(model, "model", "export")
    if isinstance(model, Emulated):
        model = model.quantized
    path, runtime = _runtime_of(path, "export")
    check_tensor(example_input, "example_input", "export")
    if quantize is not None:
        check_choice(quantize, "quantize", "export", ("int8",))
        calibration = check_calibration(calibration, example_input, "export")
        check_choice(method, "method", "export", METHODS if runtime == "executorch" else METHODS[:2])
    for name, flag in (("bias_correction", bias_correction), ("adaround", adaround)):
        check_bool(flag, name, "export")
        if flag and (runtime != "executorch" or quantize is None):
            raise ValueError(message(name, "export", "False unless quantize='int8' for a .pte", flag))
    path.parent.mkdir(parents=True, exist_ok=True)
    if runtime == "onnxruntime":
        return _export_onnx(model, path, example_input, quantize, calibration, method)
    _need("executorch")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    if quantize == "int8":
        model = quantize_pt2e(model, example_input, calibration, method, bias_correction=bias_correction,
                              adaround=adaround)
    elif isinstance(model, nn.Module) and not isinstance(model, torch.fx.GraphModule):
        model = clone(model).eval()
    with quiet_pytree():
        ep = torch.export.export(model, (example_input,))
        program = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
    path.write_bytes(program.buffer)
    return path


def _export_onnx(model, path, example_input, quantize, calibration, method) -> Path:
    _need("onnx", "onnx onnxscript onnxruntime")
    fp32 = path.with_suffix(".fp32.onnx") if quantize else path
    import warnings

    with warnings.catch_warnings():   # the TorchScript exporter: 50× faster here than dynamo's
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(clone(model).eval(), (example_input,), str(fp32), input_names=["x"],
                          output_names=["logits"], dynamo=False, opset_version=17)
    if quantize:
        import onnxruntime

        onnxruntime.set_default_logger_severity(3)
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                              QuantType, quantize_static)

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.it = iter([{"x": x[None].numpy()} for b in calibration for x in b])

            def get_next(self):
                return next(self.it, None)

        import contextlib
        import io

        import logging

        from onnxruntime.quantization.shape_inference import quant_pre_process

        pre = path.with_suffix(".pre.onnx")   # ONNX Runtime's recommended step: shapes + graph fusions
        quant_pre_process(str(fp32), str(pre))
        fp32.unlink()
        fp32 = pre
        logging.disable(logging.WARNING)   # "consider pre-processing" notes, done above
        try:
            with contextlib.redirect_stdout(io.StringIO()):   # its percentile calibrator prints progress
                # uint8 weights and activations (U8U8): see the module docstring. Percentile: the same
                # 0.01 % / 99.99 % clipping as labkit.pt2e (ONNX Runtime's default is 99.999).
                quantize_static(str(fp32), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8,
                                calibrate_method={"minmax": CalibrationMethod.MinMax,
                                                  "percentile": CalibrationMethod.Percentile}[method],
                                extra_options={"CalibPercentile": 99.99})
        finally:
            logging.disable(logging.NOTSET)
        fp32.unlink()
    return path


# ---------------------------------------------------------------- load and benchmark
def load(path, threads: int | None = None):
    """A callable `f(x) → output tensor` that runs the program at `path` in its runtime
    (ExecuTorch for .pte, ONNX Runtime for .onnx). `threads`: intra-op threads (None: the
    runtime's default). ExecuTorch's XNNPACK thread pool is process-wide: the last `load`
    or `benchmark` sets it."""
    path, runtime = _runtime_of(path, "load")
    if threads is not None:
        threads = check_int(threads, "threads", "load", low=1, high=256)
    if not path.is_file():
        raise FileNotFoundError(f"No program at {path}; write one with labkit.mobile.export.")
    if runtime == "onnxruntime":
        ort = _need("onnxruntime", "onnxruntime")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3   # errors only
        if threads:
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        return lambda x: torch.from_numpy(sess.run(None, {name: x.detach().numpy()})[0])
    _need("executorch")
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    if threads:
        portable_lib._unsafe_reset_threadpool(threads)
    method = Runtime.get().load_program(path).load_method("forward")
    return lambda x: method.execute((x.detach().contiguous(),))[0]


def benchmark(path, example_input: torch.Tensor, threads: int = 1, runs: int = 50,
              warmup: int = 5) -> dict:
    """Latency of one call of the program at `path` on `example_input` by the workbook's one
    protocol (`count.benchmark` times the PyTorch model it came from the same way): `warmup`
    untimed calls, then {"median_ms", "p90_ms", "min_ms", "runs", "threads", "size_mb"} over
    `runs` (≥ 50) calls."""
    check_tensor(example_input, "example_input", "benchmark")
    threads = check_int(threads, "threads", "benchmark", low=1, high=256)
    runs = check_int(runs, "runs", "benchmark", low=50)
    warmup = check_int(warmup, "warmup", "benchmark", low=0)
    f = load(path, threads=threads)
    return dict(timing(time_calls(lambda: f(example_input), runs, warmup), threads),
                size_mb=Path(path).stat().st_size / 1e6)


def predict(program, X: torch.Tensor) -> torch.Tensor:
    """Run a loaded program (`load`'s callable, batch 1) on each row of X; returns the stacked outputs."""
    if not callable(program):
        raise TypeError(message("program", "predict", "a callable returned by labkit.mobile.load",
                                 type(program).__name__))
    check_tensor(X, "X", "predict")
    return torch.cat([program(x[None]) for x in X])
