"""Counting what a network costs: parameters, multiply-accumulates (MACs), CPU latency.

For one input sample, a layer's MACs are

    Linear (n_in → n_out):                      n_in · n_out
    Conv2d (C_in → C_out, k_h × k_w, groups g): H_out · W_out · C_out · (C_in / g) · k_h · k_w

(a bias add is not a MAC). LeNet-300-100: 784·300 + 300·100 + 100·10 = 266,200 MACs and
266,610 parameters. Unstructured sparsity removes parameters, but a dense kernel still performs
every MAC: only with sparse kernels do the `nonzero` MACs (MACs × density of the weight) turn into
speed. Structured pruning (`labkit.structured`) shrinks the dense shapes, so both counts and
latency drop.
"""
from __future__ import annotations

import statistics
import time

import pandas as pd
import torch
from torch import nn

from .train import evaluating
from .validate import check_int, check_module, check_tensor, message


def params(model: nn.Module, nonzero: bool = False) -> int:
    """Number of parameters (weights of masked layers counted once, as their effective weight).

    nonzero=True counts only the non-zero entries."""
    check_module(model, "model", "params")
    total = 0
    for m in model.modules():
        for name, p in m.named_parameters(recurse=False):
            t = m.weight if name == "weight_orig" else p
            total += int(torch.count_nonzero(t)) if nonzero else t.numel()
    return total


def _layer_macs(m: nn.Module, out: torch.Tensor) -> int:
    if isinstance(m, nn.Linear):
        return m.in_features * m.out_features * (out.numel() // out.shape[-1] // out.shape[0])
    if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        per_out = (m.in_channels // m.groups) * int(torch.tensor(m.kernel_size).prod())
        return out[0].numel() * per_out                      # C_out · spatial · per output
    return 0


@torch.no_grad()
def layers(model: nn.Module, input_shape: tuple[int, ...]) -> pd.DataFrame:
    """Per Linear/Conv layer, for one sample of `input_shape` (without the batch dimension):
    layer, type, params (weight + bias), nonzero (weights), macs, nonzero_macs (MACs × weight density)."""
    check_module(model, "model", "layers")
    if not isinstance(input_shape, (tuple, list)) or not all(isinstance(d, int) and d > 0 for d in input_shape):
        raise TypeError(message("input_shape", "layers", "a tuple of positive ints", input_shape))
    rows, hooks = [], []

    def hook(name):
        def f(m, _inp, out):
            w = m.weight.detach()
            macs = _layer_macs(m, out)
            nz = int(torch.count_nonzero(w))
            bias = m.bias.numel() if m.bias is not None else 0
            rows.append({"layer": name, "type": type(m).__name__, "params": w.numel() + bias,
                         "nonzero": nz, "macs": macs, "nonzero_macs": round(macs * nz / w.numel())})
        return f

    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            hooks.append(m.register_forward_hook(hook(name)))
    try:
        with evaluating(model):
            dev = next(model.parameters()).device
            model(torch.zeros((1, *input_shape), device=dev))
    finally:
        for h in hooks:
            h.remove()
    return pd.DataFrame(rows, columns=["layer", "type", "params", "nonzero", "macs", "nonzero_macs"])


def macs(model: nn.Module, input_shape: tuple[int, ...], nonzero: bool = False) -> int:
    """Multiply-accumulates of one forward pass on one sample (see `layers`)."""
    df = layers(model, input_shape)
    return int(df["nonzero_macs" if nonzero else "macs"].sum())


def time_calls(call, runs: int, warmup: int) -> list[float]:
    """Wall times in seconds of `runs` calls of `call()` after `warmup` untimed ones, sorted."""
    if not callable(call):
        raise TypeError(message("call", "time_calls", "a callable taking no arguments", type(call).__name__))
    runs = check_int(runs, "runs", "time_calls", low=1)
    warmup = check_int(warmup, "warmup", "time_calls", low=0)
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return sorted(times)


@torch.no_grad()
def latency(model: nn.Module, x: torch.Tensor, repeats: int = 20, warmup: int = 3,
            threads: int | None = None) -> float:
    """Median wall time in seconds of `model(x)` in eval mode on the CPU, on `threads` threads
    (None: the current count). Machine-dependent: print it in a cell marked NBVAL_IGNORE_OUTPUT."""
    check_module(model, "model", "latency")
    check_tensor(x, "x", "latency")
    repeats = check_int(repeats, "repeats", "latency", low=1)
    warmup = check_int(warmup, "warmup", "latency", low=0)
    old = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(check_int(threads, "threads", "latency", low=1))
    try:
        with evaluating(model):
            times = time_calls(lambda: model(x), repeats, warmup)
    finally:
        torch.set_num_threads(old)
    return statistics.median(times)
