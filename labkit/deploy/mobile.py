"""On-device inference: int8 post-training quantization, export, load, benchmark.

ExecuTorch (https://pytorch.org/executorch) runs a `.pte` program; its XNNPACK delegate runs the
convolutions with int8 or fp32 kernels. ONNX Runtime runs an `.onnx` file.

    export(model, "m.pte", x, quantize="int8", calibration=[batch, ...]) → load("m.pte") → f(x)

For `.pte` the int8 model is `labkit.pt2e.quantize_pt2e`'s (per-channel int8 weights, per-tensor
int8 activations, ReLU6-aware ranges, optional bias correction and AdaRound): the lowered program
computes what that in-process model computes, and `labkit.xnnpack.emulate` of it computes the same
outputs bit for bit (XNNPACK's integer rounding, in PyTorch). For `.onnx` it is ONNX Runtime's
static QDQ quantizer, uint8 activations, per-channel weights whose type picks ONNX Runtime's kernels
(`int8_kernels`, from the CPU's flags; ONNX Runtime's quantization docs, "data type selection"):

- U8S8 (int8 weights, symmetric [−127, 127]) where the CPU multiplies uint8 × int8 into int32 in
  one step: AVX-512 VNNI or AVX-VNNI (VPDPBUSD) on x86, any ARM64 CPU (UDOT/SDOT, or 16-bit
  widening multiplies without the dot-product extension). The fast path.
- U8U8 (uint8 weights) on x86 without VNNI (AVX2-only, SSE): there ONNX Runtime's U8S8 kernels use
  VPMADDUBSW, whose int16 sums of two products saturate at 32767 (255 · 127 · 2 > 32767); its U8U8
  kernels widen to int16 first and are exact, but slower.

tests/test_mobile.py checks that the optimized int8 session computes what the same QDQ graph run op
by op computes, on this CPU, with the kernels chosen for it. `onnx_kernels(path)` reads the choice
back from a program (its weights' type). See benchmarks/bench_mobile_latency.py and
benchmarks/bench_mobile_int8.py for size, latency, accuracy and agreement with fp32.
`benchmark` times a program in its runtime, `count.benchmark` the PyTorch model it came from.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

import torch
from torch import nn

from ..validate import check_bool, check_choice, check_int, check_module, check_tensor, message
from ..count import time_calls, timing
from ..prune import clone
from ._fx import need as _need
from .pt2e import (INSTALL, METHODS, check_calibration, check_float_modules, quantize_pt2e,  # noqa: F401
                   quiet_pytree, xnnpack_config)
from . import qat
from .xnnpack import Emulated

RUNTIMES = {".pte": "executorch", ".onnx": "onnxruntime"}
KERNELS = ("U8S8", "U8U8")          # ONNX Runtime's int8 kernels: activations uint8 × weights int8 / uint8
VNNI = ("avx512_vnni", "avx_vnni")  # x86 flags (Linux names) of VPDPBUSD: uint8 × int8 → int32, no saturation
# the best int8 recipe measured per runtime (benchmarks/bench_mobile_int8.py): what export(quantize="int8") does
DEFAULTS = {"executorch": dict(method="percentile", bias_correction=True, adaround=True, finetune=False,
                               float_modules=()),
            "onnxruntime": dict(method="percentile", bias_correction=False, adaround=False, finetune=False,
                                float_modules=())}
_X86 = ("x86_64", "amd64", "x64", "i386", "i686", "x86")
_ARM64 = ("aarch64", "arm64", "armv8l", "armv8b", "aarch64_be")


# ---------------------------------------------------------------- ONNX Runtime's int8 kernels
def cpu_features(override: bool = True) -> tuple[str, frozenset]:
    """(machine, flags) of this CPU: `platform.machine()` lower-cased, and the feature flags Linux
    lists in /proc/cpuinfo ("flags" on x86, "Features" on ARM), plus "avx512_vnni" where torch's
    cpuinfo sees it (macOS, Windows). Empty flags where neither tells.

    LABKIT_CPU_FLAGS (space- or comma-separated) replaces the flags read: the reference numeric
    environment (labkit.workbook.numerics) sets it to "avx2", presenting an AVX2-only x86 to the
    kernel choice as it holds ATen, MKL and oneDNN to AVX2, so stored outputs are the same on every CPU.
    override=False reads the CPU itself (what its instructions really are)."""
    check_bool(override, "override", "cpu_features")
    forced = os.environ.get("LABKIT_CPU_FLAGS") if override else None
    if forced is not None:
        return platform.machine().lower(), frozenset(forced.replace(",", " ").lower().split())
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() in ("flags", "features"):
                flags.update(value.split())
    except OSError:
        pass
    vnni = getattr(getattr(torch, "cpu", None), "_is_vnni_supported", None)
    if vnni is not None and vnni():
        flags.add("avx512_vnni")
    return platform.machine().lower(), frozenset(flags)


def int8_kernels(machine: str, flags) -> tuple[str, str]:
    """(kernels, why): the exact and fastest ONNX Runtime int8 kernels for a CPU, from its
    `platform.machine()` name and feature flags (`cpu_features`). U8S8 on x86 with AVX-512 VNNI or
    AVX-VNNI and on ARM64; U8U8 on other x86 (VPMADDUBSW would saturate) and on unknown CPUs."""
    if not isinstance(machine, str):
        raise TypeError(message("machine", "int8_kernels", "a str (platform.machine())", machine))
    if isinstance(flags, str) or not hasattr(flags, "__iter__"):
        raise TypeError(message("flags", "int8_kernels", "a set of CPU flag names", flags))
    flags, machine = {str(f).lower() for f in flags}, machine.lower()
    if machine in _X86:
        found = [f for f in VNNI if f in flags]
        if found:
            return "U8S8", f"{machine} with {found[0]}: uint8 × int8 dot products (VPDPBUSD) do not saturate"
        return "U8U8", f"{machine} without VNNI: uint8 × int8 kernels (VPMADDUBSW) would saturate"
    if machine in _ARM64 or machine.startswith("armv8") or machine.startswith("armv9"):
        dot = "with" if "asimddp" in flags or machine == "arm64" else "without"
        return "U8S8", f"{machine} {dot} dot product: uint8 × int8 kernels do not saturate on ARM"
    return "U8U8", f"{machine or 'unknown CPU'}: U8U8 is exact on every CPU"


def onnx_kernels(path) -> str | None:
    """"U8S8" or "U8U8": the int8 kernels an `.onnx` program written by `export` asks of ONNX Runtime
    (the type of its weights' DequantizeLinear inputs), None for an fp32 program."""
    path, runtime = _runtime_of(path, "onnx_kernels")
    if runtime != "onnxruntime":
        raise ValueError(message("path", "onnx_kernels", "a file name ending in .onnx", str(path)))
    if not path.is_file():
        raise FileNotFoundError(f"No program at {path}; write one with labkit.mobile.export.")
    onnx = _need("onnx", "onnx onnxscript onnxruntime")
    graph = onnx.load(str(path)).graph
    types = {t.name: t.data_type for t in graph.initializer if len(t.dims) == 4}   # conv weights (C_out, C_in, k, k)
    found = {types[n.input[0]] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in types}
    if not found:
        return None
    return "U8S8" if onnx.TensorProto.INT8 in found else "U8U8"


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


def recipe(model: nn.Module, path, method: str | None = None, bias_correction: bool | None = None,
           adaround: bool | None = None, finetune: bool | None = None, float_modules=None) -> dict:
    """The int8 settings `export(model, path, ..., quantize="int8")` uses: each argument left None
    becomes `DEFAULTS[runtime]`'s, except that AdaRound's default applies only where it can (an
    nn.Sequential model, or one with a `features` nn.Sequential such as MobileNetV2) and not with
    finetune=True.
    Returns {"method", "bias_correction", "adaround", "finetune", "float_modules"}."""
    check_module(model, "model", "recipe")
    _, runtime = _runtime_of(path, "recipe")
    default = DEFAULTS[runtime]
    finetune = default["finetune"] if finetune is None else finetune
    if adaround is None:       # fine-tuning replaces AdaRound; AdaRound needs a Sequential of layers
        adaround = default["adaround"] and finetune is not True and not isinstance(model, torch.fx.GraphModule) and (
            isinstance(model, nn.Sequential) or isinstance(getattr(model, "features", None), nn.Sequential))
    float_modules = default["float_modules"] if float_modules is None else float_modules
    return dict(method=default["method"] if method is None else method,
                bias_correction=default["bias_correction"] if bias_correction is None else bias_correction,
                adaround=adaround, finetune=finetune, float_modules=float_modules)


def export(model: nn.Module, path, example_input: torch.Tensor, quantize: str | None = None,
           calibration=None, method: str | None = None, bias_correction: bool | None = None,
           adaround: bool | None = None, kernels: str | None = None, finetune: bool | None = None,
           float_modules=None) -> Path:
    """Write `model` as an on-device program for inputs shaped like `example_input` and return
    its path. The suffix picks the runtime: `.pte` → ExecuTorch with the XNNPACK delegate,
    `.onnx` → ONNX Runtime. quantize="int8" quantizes first (needs `calibration`, a list of
    input batches): PT2E + XNNPACK quantizer for .pte (`method` as in `quantize_pt2e`); ONNX
    Runtime's static QDQ quantizer, per-channel weights, for .onnx ("minmax" or "percentile").
    `bias_correction` and `adaround` (.pte only): see `labkit.pt2e`. Each of `method`,
    `bias_correction`, `adaround`, `finetune` left None takes `DEFAULTS[runtime]`'s value (`recipe`
    says what export will do). Measured on 1,000 held-out ImageNet photos, calibrated on 128 others
    (benchmarks/bench_mobile_int8.py; export times on 2 cores shared with three other jobs, so they
    vary with the load): top-1 agreement with fp32, top-1 drop (paired s.e. ≈ 0.5 pt), export time —
    .pte minmax 93.4 %, 0.4 pt, 55 s (≈ 50 s of any .pte is lowering); percentile 95.7 %, 0.7 pt,
    150 s; histogram 95.3 %, 1.2 pt, 185 s; percentile + bias correction 96.1 %, 0.3 pt, 660 s;
    percentile + AdaRound 96.7 %, 0.5 pt, 810 s; percentile + AdaRound + bias correction 96.7 %,
    0.2 pt, 620 s (the default; where AdaRound does not apply, percentile + bias correction).
    .onnx minmax 93.9 %, 0.5 pt, 11 s; percentile 95.1 %, 0.4 pt, 260 s (ONNX Runtime's histogram
    calibrator; the default).
    `finetune` (.pte only, not with `adaround`): label-free quantization-aware fine-tuning on the
    calibration images first (`labkit.qat.finetune`, its defaults; measured on 300 photos: 94.7 %,
    0.9 pt, 420 s — not better than percentile alone yet, so not a default).
    `float_modules` (.pte only): names of submodules kept fp32 (`quantize_pt2e`); None takes the
    default, (). Measured with percentile + AdaRound + bias correction: ("features.0", "features.1")
    of MobileNetV2 (the first conv and block, ~7 % of the MACs) cut the mean KL(fp32 ‖ int8) of the
    logits by 30 % on 344 development views (0.0149 → 0.0104), but on the 1,000 held-out photos
    gave 96.9 % agreement and a 0.7 pt drop against 96.7 % and 0.2 pt (both within noise), 178 s,
    and 4 % more latency (int8/fp32 0.56 vs 0.54); calibrated on 300 photos, 96.8 %, 0.0 pt, 367 s.
    features.0-3 fp32 (~25 % of the MACs): dev KL −50 % (0.0075), held out 96.8 %, 0.3 pt, int8/fp32
    0.63 vs 0.51. Not a default: agreement is bounded by near-ties (3 % of the dev views have a
    top-2 logit margin under 0.15; fp32 with bf16-rounded weights, KL 0.0037, agrees on 98.6 %).
    `sensitivity.error_budget` says why post-training methods stop there: with AdaRound the int8
    weights alone cost a KL of 0.0009, the int8 activations alone 0.0129 (of 0.0129 in all).
    `kernels` (.onnx int8 only): "U8S8" (int8 weights) or "U8U8" (uint8 weights); None picks them for
    this CPU (`int8_kernels(*cpu_features())`); `onnx_kernels(path)` reads them back.
    `model` may also be the GraphModule `quantize_pt2e` returns, or `xnnpack.emulate`'s module of
    it (then quantize=None)."""
    check_module(model, "model", "export")
    if isinstance(model, Emulated):
        model = model.quantized
    path, runtime = _runtime_of(path, "export")
    check_tensor(example_input, "example_input", "export")
    if quantize is not None:
        check_choice(quantize, "quantize", "export", ("int8",))
        check_module(model, "model", "export")
        r = recipe(model, path, method, bias_correction, adaround, finetune, float_modules)
        method, bias_correction, adaround, finetune = r["method"], r["bias_correction"], r["adaround"], r["finetune"]
        float_modules = r["float_modules"]
    else:
        method = "minmax" if method is None else method
        bias_correction, adaround, finetune = (False if v is None else v for v in (bias_correction, adaround, finetune))
        float_modules = () if float_modules is None else float_modules
    if quantize is not None:
        check_choice(quantize, "quantize", "export", ("int8",))
        calibration = check_calibration(calibration, example_input, "export")
        check_choice(method, "method", "export", METHODS if runtime == "executorch" else METHODS[:2])
    for name, flag in (("bias_correction", bias_correction), ("adaround", adaround), ("finetune", finetune)):
        check_bool(flag, name, "export")
        if flag and (runtime != "executorch" or quantize is None):
            raise ValueError(message(name, "export", "False unless quantize='int8' for a .pte", flag))
    float_modules = check_float_modules(float_modules, model, "export")
    if float_modules and (runtime != "executorch" or quantize is None):
        raise ValueError(message("float_modules", "export", "() unless quantize='int8' for a .pte", float_modules))
    if finetune and adaround:
        raise ValueError(message("finetune", "export", "False when adaround=True (one or the other)", finetune))
    if kernels is not None:
        check_choice(kernels, "kernels", "export", KERNELS)
        if runtime != "onnxruntime" or quantize is None:
            raise ValueError(message("kernels", "export", "None unless quantize='int8' for a .onnx", kernels))
    path.parent.mkdir(parents=True, exist_ok=True)
    if runtime == "onnxruntime":
        if quantize is not None and kernels is None:
            kernels = int8_kernels(*cpu_features())[0]
        return _export_onnx(model, path, example_input, quantize, calibration, method, kernels)
    _need("executorch")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    if quantize == "int8":
        if finetune:
            model = qat.finetune(model, example_input, calibration, method)
        model = quantize_pt2e(model, example_input, calibration, method, bias_correction=bias_correction,
                              adaround=adaround, float_modules=float_modules)
    elif isinstance(model, nn.Module) and not isinstance(model, torch.fx.GraphModule):
        model = clone(model).eval()
    with quiet_pytree():
        ep = torch.export.export(model, (example_input,))
        program = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
    path.write_bytes(program.buffer)
    return path


def _export_onnx(model, path, example_input, quantize, calibration, method, kernels) -> Path:
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
                # uint8 activations, int8 (U8S8) or uint8 (U8U8) weights: see the module docstring.
                # Percentile: the same 0.01 % / 99.99 % clipping as labkit.pt2e (ONNX Runtime's is 99.999).
                weights = {"U8S8": QuantType.QInt8, "U8U8": QuantType.QUInt8}[kernels]
                quantize_static(str(fp32), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=weights,
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
