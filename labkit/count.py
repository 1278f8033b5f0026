"""Counting what a network costs: parameters, multiply-accumulates (MACs), bytes, CPU latency.

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

import math
import statistics
import time

import pandas as pd
import torch
from torch import nn

from .coding import relative_index
from .quantize import SCHEMES, size_bytes
from .train import evaluating
from .validate import check_bits, check_bool, check_choice, check_int, check_module, check_tensor, message, prunable_layers


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
def benchmark(model: nn.Module, x: torch.Tensor, threads: int = 1, runs: int = 50, warmup: int = 5) -> dict:
    """The workbook's one timing protocol for a PyTorch model: `model(x)` in eval mode under
    no_grad, on `threads` CPU threads, `warmup` untimed calls then `runs` timed ones.

    Returns {"median_ms", "p90_ms", "min_ms", "runs", "threads"}; the model's mode and torch's
    thread count are restored. `deploy.mobile.benchmark` times an exported program the same way.
    Machine-dependent: print it in a cell marked NBVAL_IGNORE_OUTPUT."""
    check_module(model, "model", "benchmark")
    check_tensor(x, "x", "benchmark")
    threads = check_int(threads, "threads", "benchmark", low=1, high=256)
    runs = check_int(runs, "runs", "benchmark", low=1)
    warmup = check_int(warmup, "warmup", "benchmark", low=0)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with evaluating(model):
            times = time_calls(lambda: model(x), runs, warmup)
    finally:
        torch.set_num_threads(old)
    return timing(times, threads)


def timing(times: list[float], threads: int) -> dict:
    """{"median_ms", "p90_ms", "min_ms", "runs", "threads"} of sorted wall times in seconds."""
    if not isinstance(times, (list, tuple)) or not times:
        raise TypeError(message("times", "timing", "a non-empty list of seconds", type(times).__name__))
    ms = sorted(1e3 * t for t in times)
    return dict(median_ms=statistics.median(ms), p90_ms=ms[min(len(ms) - 1, int(0.9 * len(ms)))],
                min_ms=ms[0], runs=len(ms), threads=check_int(threads, "threads", "timing", low=1))


def latency_ms(model: nn.Module, x: torch.Tensor, threads: int = 1, runs: int = 50, warmup: int = 5) -> float:
    """Median milliseconds of `model(x)` by `benchmark`'s protocol (the number the notebooks print)."""
    return benchmark(model, x, threads=threads, runs=runs, warmup=warmup)["median_ms"]


# ---------------------------------------------------------------------------- bytes
def layer_bits(layer: nn.Module, bits: int | None = None, scheme: str = "symmetric", granularity: str = "channel",
               codebook: bool = False, index_bits: int | None = None) -> int:
    """Bits to store one Linear / Conv layer: its weight values with their quantization parameters
    (one stream, rounded up to whole bytes as `quantize.size_bytes` does), the sparse indices if
    any, and the bias in float32.

        values      bits=None: float32; else `bits` per value with one scale (float32) per channel
                    (+ a zero point of `bits` for "affine", `quantize.size_bytes`), or, codebook=True,
                    a k-means codebook of 2^bits float32 centroids and no scale
        sparse      index_bits=b: only the non-zeros are stored, each with a b-bit relative index
                    (Deep Compression; gaps over 2^b cost a filler entry, `coding.relative_index`);
                    with a codebook and fillers, the fillers' zero is a (2^bits + 1)-th symbol, so
                    every stored value takes bits + 1 bits
    The one size accounting of the workbook: `model_bytes`, `mixed` and `deep_compression` use it."""
    if not isinstance(layer, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        raise TypeError(message("layer", "layer_bits", "an nn.Linear or nn.Conv layer", type(layer).__name__))
    check_choice(scheme, "scheme", "layer_bits", SCHEMES)
    check_choice(granularity, "granularity", "layer_bits", ("tensor", "channel"))
    check_bool(codebook, "codebook", "layer_bits")
    w = layer.weight.detach()
    if index_bits is None:
        entries, fillers = w.numel(), 0
        index = 0
    else:
        stored, filler = relative_index(w != 0, check_bits(index_bits, "index_bits", "layer_bits", high=32))
        entries, fillers = len(stored), int(filler.sum())      # kept weights + fillers
        index = entries * index_bits
    bias = 0 if layer.bias is None else 32 * layer.bias.numel()
    if bits is None:
        if codebook:
            raise ValueError(message("bits", "layer_bits", "an int in the range [1, 16] when codebook=True", bits))
        return 32 * entries + index + bias
    bits = check_bits(bits, "bits", "layer_bits", high=16)
    channels = w.shape[0] if granularity == "channel" else 1
    # a filler stores the value 0, which a codebook of 2^b centroids does not hold: 2^b + 1 symbols
    # take b + 1 bits each (Deep Compression's P+Q column counts the same: deep_compression.size_table)
    code_bits = bits + 1 if codebook and fillers else bits
    values = 8 * size_bytes(entries, code_bits, 0 if codebook else channels, scheme,
                            codebook=2 ** bits if codebook else 0)
    return values + index + bias


def model_bytes(model: nn.Module, bits: int | dict | None = None, scheme: str = "symmetric",
                granularity: str = "channel", codebook: bool = False, index_bits: int | None = None) -> int:
    """Bytes of the Linear / Conv layers of `model`, each rounded up to whole bytes (`layer_bits`).

    bits: None (float32), an int, or {layer name: bits or None}; the other arguments as in
    `layer_bits`. Other parameters (normalization, embeddings) are not counted."""
    layers = prunable_layers(model, "model", "model_bytes")
    if isinstance(bits, dict):
        unknown = set(bits) - {n for n, _ in layers}
        if unknown:
            raise ValueError(message("bits", "model_bytes", f"a dict keyed by layer names "
                                     f"{[n for n, _ in layers]}", sorted(unknown)))
    total = 0
    for name, m in layers:
        b = bits.get(name) if isinstance(bits, dict) else bits
        total += math.ceil(layer_bits(m, b, scheme, granularity, codebook, index_bits) / 8)
    return total
