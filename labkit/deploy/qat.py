"""Label-free quantization-aware fine-tuning: the int8 network learns to give the fp32 network's logits.

Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient Integer-Arithmetic-Only
Inference", https://arxiv.org/abs/1712.05877 (simulated quantization in the forward pass, the
straight-through estimator in the backward pass); Hinton, Vinyals, Dean 2015, "Distilling the
Knowledge in a Neural Network", https://arxiv.org/abs/1503.02531 (the fp32 model's soft outputs as
targets: no labels needed).

After post-training quantization each layer's rounding error is fixed; fine-tuning the weights
*through* the quantizer lets later layers make up for earlier ones. The graph trained is exactly the
graph `pt2e.prepare` annotates for XNNPACK, calibrated with `method` (ReLU6-aware ranges): every
observer becomes a fake quantizer at the same place —

    activations  x̂ = s·(clamp(round(x/s) + z, −128, 127) − z)       (s, z) fixed by calibration
    weights      Ŵ_c = s_c·clamp(round(W_c/s_c), −127, 127),  s_c = max|W_c| / 127   (per output channel c)

— with ∂x̂/∂x = 1 inside the range and 0 outside (straight-through). The weights W and biases b
(BatchNorm already folded) minimize, over unlabelled images x and their mirror images,

    L = T² · KL( softmax(f(x)/T) ‖ softmax(f̂(x)/T) )                f: fp32 network, f̂: int8

by Adam. `finetune` returns the fp32 graph with the learned W, b; `pt2e.quantize_pt2e` then
quantizes it as usual (it re-calibrates (s, z) and rounds W to nearest, what Ŵ computed), so the
lowered `.pte` carries what was learned. `mobile.export(..., finetune=True)` does both.
benchmarks/bench_mobile_int8.py measures it on real ImageNet photos held out from the fine-tuning.
Measured there (MobileNetV2, 300 photos, the defaults: 60 steps of 16, lr 1e-5) it does NOT help
yet: top-1 agreement with fp32 94.7 % [93.1, 95.9] on 1,000 held-out photos, against 95.7 % for
percentile calibration alone and 96.7 % for AdaRound + bias correction (export's default). More
photos, steps or a tuned learning rate may change that; it is an option, not a default.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..validate import check_choice, check_float, check_int, check_module, check_tensor, message
from .pt2e import METHODS, check_calibration, export_graph, prepare, quiet_pytree

LEVELS = 127                      # restricted symmetric int8 weights: integers in [−127, 127]


class FakeQuant(nn.Module):
    """x̂ = s·(clamp(round(x/s) + z, q_min, q_max) − z) per tensor, (s, z) fixed; straight-through."""

    def __init__(self, scale: float, zero_point: int, q_min: int = -128, q_max: int = 127):
        super().__init__()
        self.scale, self.zero_point, self.q_min, self.q_max = float(scale), int(zero_point), int(q_min), int(q_max)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, self.q_min, self.q_max)


class WeightFakeQuant(nn.Module):
    """Ŵ_c = s_c·clamp(round(W_c/s_c), −127, 127) with s_c = max|W_c| / 127, per output channel c."""

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        s = w.detach().abs().flatten(1).amax(1).clamp_min(2**-24) / LEVELS
        return torch.fake_quantize_per_channel_affine(w, s, torch.zeros(len(s), dtype=torch.int32), 0,
                                                      -LEVELS, LEVELS)


def fake_quant_graph(prepared: torch.fx.GraphModule) -> int:
    """Replace, in place, every observer of a calibrated `pt2e.prepare` graph by its fake quantizer:
    `WeightFakeQuant` where it observes a weight, `FakeQuant` with its calibrated (s, z) elsewhere.
    Returns the number replaced."""
    if not isinstance(prepared, torch.fx.GraphModule):
        raise TypeError(message("prepared", "fake_quant_graph", "a torch.fx.GraphModule (pt2e.prepare's)",
                                type(prepared).__name__))
    n = 0
    for node in prepared.graph.nodes:
        if node.op != "call_module" or not hasattr(prepared.get_submodule(node.target), "calculate_qparams"):
            continue
        obs = prepared.get_submodule(node.target)
        if node.args[0].op == "get_attr":
            fq = WeightFakeQuant()
        else:
            seen = getattr(obs, "min_val", None)
            if seen is not None and not bool(torch.isfinite(seen).all()):
                raise ValueError(message("prepared", "fake_quant_graph", "a graph calibrated on images first",
                                         f"observer {node.target} saw nothing"))
            s, z = obs.calculate_qparams()
            fq = FakeQuant(float(s), int(z), obs.quant_min, obs.quant_max)
        setattr(prepared, node.target, fq)
        n += 1
    return n


def finetune(model: nn.Module, example_input: torch.Tensor, calibration, method: str = "percentile",
             steps: int = 60, batch: int = 16, lr: float = 1e-5, temperature: float = 1.0,
             seed: int = 0) -> torch.fx.GraphModule:
    """`pt2e.export_graph(model)` (BatchNorm folded) with weights and biases fine-tuned for `steps`
    Adam steps (`lr`) so that its int8 version's logits match `model`'s (the loss in the module
    docstring, temperature `temperature`) on `batch` images per step drawn from `calibration` (a
    list of input batches; no labels) and their mirror images. The activation ranges are
    calibrated on the same images with `method` first. Pass the result to
    `pt2e.quantize_pt2e`. `model` is not modified."""
    check_module(model, "model", "finetune")
    check_tensor(example_input, "example_input", "finetune")
    images = check_calibration(calibration, example_input, "finetune")
    check_choice(method, "method", "finetune", METHODS)
    steps = check_int(steps, "steps", "finetune", low=0)
    batch = check_int(batch, "batch", "finetune", low=1)
    lr = check_float(lr, "lr", "finetune", low=0, closed="neither")
    temperature = check_float(temperature, "temperature", "finetune", low=0, closed="neither")
    seed = check_int(seed, "seed", "finetune", low=0)
    X = torch.cat(images)
    graph = export_graph(model, example_input)
    student = prepare(graph, example_input, method)
    with torch.no_grad():
        for b in images:
            student(b)
        teacher = [torch.cat([graph(b) for b in v.split(64)]) for v in (X, X.flip(-1))]   # (N, classes) ×2
    fake_quant_graph(student)
    params = [p for p in student.parameters() if p.is_floating_point()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    g = torch.Generator().manual_seed(seed)
    T = temperature
    for _ in range(steps):
        idx = torch.randint(len(X), (min(batch, len(X)),), generator=g)
        flip = torch.rand(len(idx), generator=g) < 0.5
        x = torch.where(flip[:, None, None, None], X[idx].flip(-1), X[idx])
        target = torch.where(flip[:, None], teacher[1][idx], teacher[0][idx])
        loss = T * T * F.kl_div(F.log_softmax(student(x) / T, 1), F.log_softmax(target / T, 1),
                                reduction="batchmean", log_target=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
    trained = dict(student.named_parameters())
    with torch.no_grad(), quiet_pytree():
        for name, p in graph.named_parameters():
            p.copy_(trained[name])
    return graph
