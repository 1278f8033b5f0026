"""Where an int8 network's error comes from: the error budget of its quantizers.

Quantization sensitivity analysis, the PTQ debugging steps of Nagel et al. 2021, "A white paper on
neural network quantization", https://arxiv.org/abs/2106.08295: quantize the weights only, then
the activations only, then one quantizer at a time, and see which costs most.

Every observer of the XNNPACK int8 graph (`pt2e.prepare`, calibrated with `method`) becomes its
fake quantizer (`qat.fake_quant_graph`: the same (s, z), what the lowered program computes up to
XNNPACK's integer rounding). Turning sets of them on, the rest off, gives each set's cost

    D = (1/N) Σ_x KL( softmax f(x) ‖ softmax f̂(x) )       f: fp32, f̂: only that set quantized

over the N `images` (no labels). For small logit errors δ, D ≈ ½ E[δᵀ (diag p − p pᵀ) δ]
(p = softmax f(x)) is quadratic in δ, so independent errors add: the activation rows add up to
about the "activations" row, and "weights" + "activations" to about "all".

An activation quantizer that shares its (s, z) with the one before it (XNNPACK quantizes a
convolution's output and the ReLU6 after it on one grid) is one row: quantizing twice on one
grid changes nothing.

Measured (MobileNetV2, percentile ranges, 128 photos of imagenet-val-1300 for calibration, D on
344 views: 172 other photos and their mirrors): all 0.0185, weights only 0.0102, activations only
0.0114 with weights rounded to nearest; all 0.0129, weights only 0.0009, activations only 0.0129
with AdaRound (`adaround=True`; its activation ranges are calibrated on the rounded model). After
AdaRound the activations are nearly all of the error: no rounding of the weights can remove it. The
67 activation rows sum to 0.0139; the largest are the ReLU6 output of features.0 (0.0025), the
residual sum of features.16 (0.0013) and the ReLU6 output of features.2's expansion (0.0011); the
int8 logits themselves (classifier.1's output, step 0.146) cost 0.0006. 1,029 s on 2 cores (shared
with another job). Rescaling the 8 largest rows' ranges by the factor in {0.8, …, 2.2} that lowered
D on the calibration images cut D on the other images by only 2 % (0.0114 → 0.0111).
"""
from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from ..validate import check_bool, check_choice, check_module, check_tensor, message
from ._fx import CLAMPS, op
from .adaround import adaround as round_weights
from .pt2e import METHODS, check_calibration, export_graph, prepare, quiet_pytree
from .qat import FakeQuant, WeightFakeQuant, fake_quant_graph


def kl_to(reference: torch.Tensor, logits: torch.Tensor) -> float:
    """D = mean over rows of KL(softmax reference ‖ softmax logits); both (N, classes)."""
    for name, t in (("reference", reference), ("logits", logits)):
        check_tensor(t, name, "kl_to")
        if t.ndim != 2 or t.shape[0] == 0:
            raise ValueError(message(name, "kl_to", "logits of shape (N, classes), N ≥ 1", f"shape {tuple(t.shape)}"))
    if reference.shape != logits.shape:
        raise ValueError(message("logits", "kl_to", f"the shape of reference {tuple(reference.shape)}",
                                 f"shape {tuple(logits.shape)}"))
    lp = reference.double().log_softmax(1)
    return float((lp.exp() * (lp - logits.double().log_softmax(1))).sum(1).mean())


def _tensor(node) -> str:
    """What an observer node quantizes: 'input', or '<submodule> <op> output'."""
    src = node.args[0]
    if src.op == "placeholder":
        return "input"
    stack = list(src.meta.get("nn_module_stack", {}).values())
    return f"{stack[-1][0] if stack else '(top)'} {op(src) or src.op} output"


def _groups(graph: torch.fx.GraphModule) -> list[list]:
    """The activation FakeQuant nodes in graph order, one list per grid (shared (s, z) merged)."""
    groups, group_of = [], {}
    for node in graph.graph.nodes:
        if node.op != "call_module" or not isinstance(graph.get_submodule(node.target), FakeQuant):
            continue
        fq, src = graph.get_submodule(node.target), node.args[0]
        before = src.args[0] if op(src) in CLAMPS else None
        if before is not None and before in group_of:
            first = graph.get_submodule(before.target)
            if (first.scale, first.zero_point) == (fq.scale, fq.zero_point):
                group_of[node] = group_of[before]
                groups[group_of[node]].append(node)
                continue
        group_of[node] = len(groups)
        groups.append([node])
    return groups


def error_budget(model: nn.Module, example_input: torch.Tensor, calibration, images: torch.Tensor,
                 method: str = "percentile", adaround: bool = False, per_quantizer: bool = True) -> pd.DataFrame:
    """D (module docstring) of `model`'s XNNPACK int8 version on `images` (N, ...), calibrated on
    `calibration` (a list of input batches) with `method`, its weights rounded by AdaRound on the
    calibration images if `adaround`, else to nearest. One row each for "all", "weights" (fp32
    activations) and "activations" (float weights); then, if `per_quantizer`, one per activation
    grid in graph order ("activation"): the tensor(s) it quantizes, its (s, z) and the range
    [s·(−128 − z), s·(127 − z)] it represents, and D with only it on. Columns: quantized, tensor,
    scale, zero_point, low, high, D. Costs one forward pass over `images` per row (MobileNetV2:
    70 rows, 1,029 s on 344 images and 2 cores shared with another job). `model` is not modified."""
    check_module(model, "model", "error_budget")
    check_tensor(example_input, "example_input", "error_budget")
    calibration = check_calibration(calibration, example_input, "error_budget")
    check_tensor(images, "images", "error_budget")
    if images.ndim == 0 or images.shape[0] == 0 or images.shape[1:] != example_input.shape[1:]:
        raise ValueError(message("images", "error_budget", f"a batch of shape (N ≥ 1, {tuple(example_input.shape[1:])})",
                                 f"shape {tuple(images.shape)}"))
    check_choice(method, "method", "error_budget", METHODS)
    check_bool(adaround, "adaround", "error_budget")
    check_bool(per_quantizer, "per_quantizer", "error_budget")

    float_weights = {k: p.detach().clone() for k, p in export_graph(model, example_input).named_parameters()}
    rounded = round_weights(model, torch.cat(calibration)) if adaround else model
    graph = prepare(rounded, example_input, method)        # ranges as quantize_pt2e calibrates them
    with torch.no_grad():
        for batch in calibration:
            graph(batch)
        fake_quant_graph(graph)
        int8_weights = {k: p.detach().clone() for k, p in graph.named_parameters()}
        reference = torch.cat([model(b) for b in images.split(64)])
    quantizers = {n: m for n, m in graph.named_modules() if isinstance(m, (FakeQuant, WeightFakeQuant))}
    weight_q = {n for n, m in quantizers.items() if isinstance(m, WeightFakeQuant)}
    groups = _groups(graph)

    def D(on: set, weights: dict) -> float:
        for n, m in quantizers.items():
            setattr(graph, n, m if n in on else nn.Identity())
        with torch.no_grad(), quiet_pytree():
            for k, p in graph.named_parameters():
                p.copy_(weights[k])
            return kl_to(reference, torch.cat([graph(b) for b in images.split(64)]))

    acts = set(quantizers) - weight_q
    rows = [dict(quantized="all", D=D(set(quantizers), int8_weights)),
            dict(quantized="weights", D=D(weight_q, int8_weights)),
            dict(quantized="activations", D=D(acts, float_weights))]
    for group in groups if per_quantizer else []:
        fq = quantizers[group[0].target]
        rows.append(dict(quantized="activation", tensor=" → ".join(_tensor(n) for n in group),
                         scale=fq.scale, zero_point=fq.zero_point, low=fq.scale * (fq.q_min - fq.zero_point),
                         high=fq.scale * (fq.q_max - fq.zero_point), D=D({n.target for n in group}, float_weights)))
    for n, m in quantizers.items():
        setattr(graph, n, m)
    return pd.DataFrame(rows, columns=["quantized", "tensor", "scale", "zero_point", "low", "high", "D"])
