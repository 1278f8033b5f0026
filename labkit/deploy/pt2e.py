"""int8 post-training quantization for XNNPACK (ExecuTorch), with two fixes beyond calibration.

The flow is torchao's PT2E, the one ExecuTorch documents (torch 2.13 no longer has
`torch.ao.quantization.quantize_pt2e`):

    torch.export → prepare_pt2e(XNNPACKQuantizer) → run calibration batches → convert_pt2e

Weights are int8, restricted symmetric (not labkit.quantize's torch symmetric [−128, 127]), one
scale per output channel c:  s_c = max|W_c| / 127,
W_q = clamp(round(W / s_c), −127, 127), after BatchNorm is folded into the convolution.
Activations are int8 affine per tensor, x_q = clamp(round(x / s) + z, −128, 127), with (s, z)
chosen from the calibration data by `method`:

- "minmax":     the range [min x, max x] seen in calibration — one outlier stretches s for all.
- "percentile": the range [q_0.01 %, q_99.99 %] of the values seen — outliers are clipped.
- "histogram":  torch's HistogramObserver: the range that minimizes the L2 error between x and its
                quantized value over the calibration histogram (MSE calibration).

**ReLU6-aware ranges** (`fuse_relu6=True`). XNNPACK's quantizer fuses conv + ReLU but not conv +
ReLU6 (hardtanh): it quantizes the convolution's output *before* the clamp, over the whole
pre-activation range (say [−40, 30]), and the ReLU6 output shares those (s, z). Of 256 levels only
the ~6/70 inside [0, 6] are then used. Observing the conv output as ReLU6 clamps it,
x ↦ clamp(x, 0, 6), gives a range inside [0, 6]; quantizing to it clamps exactly as ReLU6 does, so
the function is unchanged and the step s is ~10× finer.

**Bias correction** (`bias_correction=True`; Nagel et al. 2019, "Data-free quantization through
weight equalization and bias correction", https://arxiv.org/abs/1906.04721, §4.2, the empirical
variant). Rounding the weights, W̃ = W + ε, is not zero-mean per output channel, least of all
where a channel has few weights (a depthwise 3×3 has 9): E[ỹ_c] − E[y_c] = (ε E[x])_c. With
calibration inputs, layer by layer in graph order (so each layer sees the corrected ones before it),

    b_c ← b_c − E[(ε x̃)_c]        ε = W̃ − W (BN folded),  x̃: the layer's input in the int8 model

where E averages over the batch and spatial positions. The int32 bias of the lowered program
carries the correction; nothing else changes. Label-free: calibration needs images, not labels.
Only the weights' error is corrected, as in the paper. Correcting the whole mean error of the int8
model instead (E[y_c] − E[ỹ_c], activations' rounding and clipping included) would also pay, at
every position, for the outliers a percentile range clips on purpose (tests/test_pt2e.py checks
that the correction leaves them alone). To measure the int8 model on MobileNetV2, run
benchmarks/bench_mobile_latency.py: top-1 agreement with fp32, size and latency on your machine.

**AdaRound** (`adaround=True`; `labkit.adaround`): each weight rounds up or down as minimizes the
layer's output error on the calibration images, not to nearest; the integers stay on XNNPACK's
per-channel grid, so the lowered program carries them.

See also Krishnamoorthi 2018, https://arxiv.org/abs/1806.08342, and Nagel et al. 2021, "A white
paper on neural network quantization", https://arxiv.org/abs/2106.08295.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..validate import check_bool, check_choice, check_finite, check_module, check_tensor, message
from ._fx import CLAMPS as _CLAMPS, INSTALL, in_modules, need as _need, op as _op, under  # noqa: F401  (INSTALL: pt2e's API)
from .adaround import adaround as round_weights, fold_bn
from ..prune import clone

METHODS = ("minmax", "percentile", "histogram")
_LAYERS = ("conv2d", "linear")


@contextlib.contextmanager
def quiet_pytree():
    """Hide torch's own LeafSpec FutureWarning, raised by copying or lowering an exported graph."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        yield


# ---------------------------------------------------------------- calibration observers
@functools.cache
def observers() -> dict:
    """{method: observer class}. Each observes clamp(x, *self.clamp) when `clamp` is set (the
    ReLU6-aware range); forward always returns x unchanged."""
    from torchao.quantization.pt2e import HistogramObserver, MinMaxObserver

    class PercentileObserver(MinMaxObserver):
        """Keeps the running min/max of each batch's 0.01 % and 99.99 % quantiles (not of x)."""

        q = 1e-4

        def forward(self, x):
            if x.numel() == 0:
                return x
            v = x.detach().flatten().float()
            if v.numel() > 1 << 20:   # a fixed, evenly spaced sample of at most 2^20 values
                v = v[torch.arange(1 << 20) * (v.numel() // (1 << 20))]
            k = max(1, round(self.q * (v.numel() - 1)) + 1)      # ≈ torch.quantile's 'nearest' rank
            lo, hi = v.kthvalue(k).values, v.kthvalue(v.numel() + 1 - k).values
            self.min_val.copy_(torch.minimum(self.min_val, lo))
            self.max_val.copy_(torch.maximum(self.max_val, hi))
            return x

    def clamped(cls):
        class Clamped(cls):
            clamp = None   # (low, high) of the activation that follows, or None

            def forward(self, x):
                if self.clamp is not None:
                    super().forward(x.detach().clamp(*self.clamp))
                    return x
                return super().forward(x)

        Clamped.__name__ = Clamped.__qualname__ = cls.__name__
        return Clamped

    return {"minmax": clamped(MinMaxObserver), "percentile": clamped(PercentileObserver),
            "histogram": clamped(HistogramObserver)}


def xnnpack_config(method: str = "minmax"):
    """XNNPACK's symmetric per-channel int8 config with the activation observer of `method`."""
    check_choice(method, "method", "xnnpack_config", METHODS)
    _need("executorch")
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config

    cfg = get_symmetric_quantization_config(is_per_channel=True)
    act = dataclasses.replace(cfg.input_activation,
                              observer_or_fake_quant_ctr=observers()[method].with_args(eps=2**-12))
    return dataclasses.replace(cfg, input_activation=act, output_activation=act)


def check_calibration(calibration, example_input, func: str) -> list[torch.Tensor]:
    """`calibration` as a list of input batches shaped like `example_input` (one tensor is one batch),
    every value finite (a NaN or Inf would become an observed range). `func` names the caller."""
    if not isinstance(func, str):
        raise TypeError(message("func", "check_calibration", "a str (the caller's name)", func))
    check_tensor(example_input, "example_input", func)
    if example_input.ndim == 0:
        raise ValueError(message("example_input", func, "a batch (N, ...)", "a 0-d tensor"))
    calibration = _batches(calibration, func)
    for b in calibration:
        if b.ndim == 0 or b.shape[1:] != example_input.shape[1:]:
            raise ValueError(message("calibration", func, f"batches of shape (N, {tuple(example_input.shape[1:])})",
                                      tuple(b.shape)))
    return list(calibration)


def _batches(calibration, func: str) -> list[torch.Tensor]:
    if isinstance(calibration, torch.Tensor):
        calibration = [calibration]
    if not isinstance(calibration, (list, tuple)) or not calibration:
        raise TypeError(message("calibration", func, "a non-empty list of input batches (tensors)",
                                 type(calibration).__name__))
    for b in calibration:
        check_finite(b, "calibration", func)
    return list(calibration)


def _graph(value, name: str, func: str, what: str) -> torch.fx.GraphModule:
    if not isinstance(value, torch.fx.GraphModule):
        raise TypeError(message(name, func, f"a torch.fx.GraphModule ({what})", type(value).__name__))
    return value


# ---------------------------------------------------------------- the two fixes
def clamp_observed_ranges(prepared: torch.fx.GraphModule) -> int:
    """Make the observer of every conv/linear output that feeds only a ReLU6 (or ReLU) observe the
    clamped values. Returns how many observers now clamp."""
    _graph(prepared, "prepared", "clamp_observed_ranges", "prepare's observed graph")
    n = 0
    for node in prepared.graph.nodes:
        if _op(node) not in _CLAMPS:
            continue
        obs_node = node.args[0]
        if obs_node.op != "call_module" or len(obs_node.users) != 1 or _op(obs_node.args[0]) not in _LAYERS:
            continue
        low, high = (0.0, float("inf")) if _op(node).startswith("relu") else (float(node.args[1]), float(node.args[2]))
        prepared.get_submodule(obs_node.target).clamp = (low, high)
        n += 1
    return n


def _float_weights(reference: torch.fx.GraphModule) -> list[torch.Tensor]:
    """W of each conv2d/linear node of `reference`, in graph order (read through its observers)."""
    weights = []
    for node in reference.graph.nodes:
        if _op(node) in _LAYERS:
            w = node.args[1]
            while w.op != "get_attr":
                w = w.args[0]
            weights.append(functools.reduce(getattr, w.target.split("."), reference).detach().clone())
    return weights


class _BiasCorrection(torch.fx.Interpreter):
    """Runs the int8 graph; before each conv2d/linear node, b ← b − E[(W̃ − W) x̃] on its input x̃."""

    def __init__(self, quantized, weights):
        super().__init__(quantized)
        self.weights, self.layers, self.corrected = weights, 0, 0

    def run_node(self, node):
        if _op(node) in _LAYERS:
            if self.layers >= len(self.weights):
                raise RuntimeError("correct_biases: the quantized and reference graphs have different layers")
            (x, w_q, bias, *conv_args), _ = self.fetch_args_kwargs_from_env(node)
            eps = w_q - self.weights[self.layers]                        # ε = W̃ − W
            self.layers += 1
            if bias is not None and getattr(node.args[2], "op", "") == "get_attr":
                e = F.conv2d(x, eps, None, *conv_args) if _op(node) == "conv2d" else F.linear(x, eps)
                mean = e.mean([0, 2, 3]) if e.dim() == 4 else e.mean(0)      # E over batch and space: (C,)
                functools.reduce(getattr, node.args[2].target.split("."), self.module).data -= mean
                self.corrected += 1
        return super().run_node(node)   # reads the corrected bias: the layers after see its output


def correct_biases(quantized: torch.fx.GraphModule, reference, calibration) -> int:
    """Empirical bias correction of the weights' rounding, in place on `quantized` (convert_pt2e's
    output). `reference` holds the float weights W (BN folded) of the same layers in the same
    order: a graph (`export_graph` of the model, or the prepared model before `convert_pt2e`,
    which changes it) or the list of W. One pass over `torch.cat(calibration)`, layer by layer.
    Returns the number of corrected layers."""
    _graph(quantized, "quantized", "correct_biases", "convert_pt2e's output")
    if not isinstance(reference, (list, torch.fx.GraphModule)) or (
            isinstance(reference, list) and not all(isinstance(w, torch.Tensor) for w in reference)):
        raise TypeError(message("reference", "correct_biases", "a torch.fx.GraphModule or a list of "
                                 "float weights", type(reference).__name__))
    calibration = _batches(calibration, "correct_biases")
    weights = reference if isinstance(reference, list) else _float_weights(reference)
    with torch.no_grad():
        fix = _BiasCorrection(quantized, weights)
        fix.run(torch.cat(list(calibration)))
    if fix.layers != len(weights):
        raise RuntimeError("correct_biases: the quantized and reference graphs have different layers")
    return fix.corrected


def export_graph(model: nn.Module, example_input: torch.Tensor) -> torch.fx.GraphModule:
    """torch.export of a copy of `model` (eval, BatchNorm folded into the convolutions as the
    quantizer would fold it) with the batch dimension dynamic: the graph `prepare` annotates.
    `quantize_pt2e` accepts it in place of the model, to export once for several methods."""
    check_module(model, "model", "export_graph")
    check_tensor(example_input, "example_input", "export_graph")
    x2 = torch.cat([example_input[:1]] * 2)   # batch 2, so that export keeps the batch dynamic
    return torch.export.export(fold_bn(model), (x2,),
                               dynamic_shapes=({0: torch.export.Dim("batch")},)).module()


@functools.cache
def _no_bn_quantizer():
    """XNNPACKQuantizer without its conv + BatchNorm patterns, for graphs with no BatchNorm left: it
    re-traces each such pattern with torch.export on every `prepare` (the export times that
    benchmarks/bench_mobile_latency.py prints show what lowering costs on your machine)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer

    class NoBatchNormXNNPACKQuantizer(XNNPACKQuantizer):
        SUPPORTED_PATTERNS = [p for p in XNNPACKQuantizer.SUPPORTED_PATTERNS if "_bn" not in p.name]

    return NoBatchNormXNNPACKQuantizer


def check_float_modules(value, model, func: str) -> tuple[str, ...]:
    """`value` as a tuple of names of `model`'s submodules (e.g. ("features.0",)), else raise;
    `func` names the function whose 'float_modules' parameter it is."""
    if not isinstance(func, str) or not func.isidentifier():
        raise TypeError(message("func", "check_float_modules", "a function's name (a str)", repr(func)[:80]))
    check_module(model, "model", func)
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise TypeError(message("float_modules", func, "a tuple of submodule names, e.g. ('features.0',)", value))
    names = {n for n, _ in model.named_modules()} if not isinstance(model, torch.fx.GraphModule) else None
    for v in value:
        if not v or (names is not None and v not in names):
            raise ValueError(message("float_modules", func, "names of the model's submodules "
                                     "(model.named_modules())", v))
    return tuple(value)


def prepare(model: nn.Module, example_input: torch.Tensor, method: str = "minmax", fuse_relu6: bool = True,
            float_modules=()):
    """The observed graph before calibration: `export_graph(model)` (or a copy of `model` if it is
    that graph already), annotated by XNNPACK's quantizer with `method`'s observers; ReLU6-aware
    if `fuse_relu6`. The ops of the submodules named in `float_modules` are left unannotated: they
    stay fp32 (and XNNPACK runs them in fp32)."""
    if not isinstance(model, torch.fx.GraphModule):
        check_module(model, "model", "prepare")
    check_tensor(example_input, "example_input", "prepare")
    check_choice(method, "method", "prepare", METHODS)
    check_bool(fuse_relu6, "fuse_relu6", "prepare")
    float_modules = check_float_modules(float_modules, model, "prepare")
    _need("executorch")
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    if isinstance(model, torch.fx.GraphModule):
        with quiet_pytree():
            gm = clone(model)
    else:
        gm = export_graph(model, example_input)
    quantizer = XNNPACKQuantizer if any("batch_norm" in _op(n) for n in gm.graph.nodes) else _no_bn_quantizer()
    quantizer = quantizer().set_global(xnnpack_config(method))
    if float_modules:
        quantizer.set_filter_function(lambda node: not in_modules(node, float_modules))
    prepared = prepare_pt2e(gm, quantizer)
    if fuse_relu6:
        clamp_observed_ranges(prepared)
    return prepared


def quantize_pt2e(model: nn.Module, example_input: torch.Tensor, calibration, method: str = "minmax",
                  fuse_relu6: bool = True, bias_correction: bool = False, adaround: bool = False,
                  float_modules=()):
    """int8 copy of `model` (PT2E, XNNPACK quantizer), calibrated on `calibration` (a list of
    input batches) with `method`; `fuse_relu6` and `bias_correction` as in the module docstring;
    `adaround`: the weights are rounded by `labkit.adaround` on the calibration images first
    (`model` must then be the nn.Module, not `export_graph`'s graph); `float_modules`: names of
    submodules that stay fp32 (mixed precision, e.g. ("features.0", "features.1"), MobileNetV2's
    first convolution and block: ~7 % of the MACs, −30 % of the logits' KL; `mobile.export` has the
    held-out figures).
    Returns a torch.fx.GraphModule that runs in-process with quantize/dequantize ops: the network
    `mobile.export` lowers. XNNPACK's integer arithmetic (int32 bias, its own requantization)
    can land a value one level apart from it, and such differences spread over many layers;
    `labkit.xnnpack.emulate(q)` computes what the lowered program computes, bit for bit.
    `model` is not modified. Accepts any batch size."""
    check_module(model, "model", "quantize_pt2e")
    check_tensor(example_input, "example_input", "quantize_pt2e")
    calibration = check_calibration(calibration, example_input, "quantize_pt2e")
    check_choice(method, "method", "quantize_pt2e", METHODS)
    for name, flag in (("fuse_relu6", fuse_relu6), ("bias_correction", bias_correction), ("adaround", adaround)):
        check_bool(flag, name, "quantize_pt2e")
    float_modules = check_float_modules(float_modules, model, "quantize_pt2e")
    _need("executorch")
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    original = model
    if adaround:
        model = round_weights(model, torch.cat(calibration))
        if float_modules:          # the fp32 layers keep their float weights (BN folded)
            folded = dict(fold_bn(original).named_modules())
            with torch.no_grad():
                for name, m in model.named_modules():
                    if isinstance(m, (nn.Conv2d, nn.Linear)) and under(name, float_modules):
                        m.weight.copy_(folded[name].weight)
    prepared = prepare(model, example_input, method, fuse_relu6, float_modules)
    with torch.no_grad():
        for batch in calibration:
            prepared(batch)
    if bias_correction:        # W: the float weights, not AdaRound's (already on the int8 grid)
        weights = _float_weights(export_graph(original, example_input) if adaround else prepared)
    quantized = convert_pt2e(prepared)
    if bias_correction:
        correct_biases(quantized, weights, calibration)
    return quantized
