"""Deep Compression: prune → share weights (k-means) → Huffman-code, every bit counted.

Han, Mao & Dally, "Deep Compression: Compressing Deep Neural Networks with Pruning, Trained
Quantization and Huffman Coding" (ICLR 2016), https://arxiv.org/abs/1510.00149

A layer of n weights, pruned to nnz kept weights and shared with a codebook of K = 2^b values,
is stored as (see `labkit.coding` for the relative indices and the fillers):

    entries E = nnz + fillers, each a b_idx-bit gap and a codebook index (K = the filler zero)
    P     : E·(32 + b_idx)                                   fp32 values, relative indices
    P+Q   : E·(⌈log2(K + 1)⌉ + b_idx) + 32·K                  fixed-width indices, fp32 codebook
    P+Q+H : Huffman(values) + Huffman(indices) + both tables + 32·K

plus the biases, 32 bits each, at every stage. The compression rate is 32·(weights + biases)
divided by that. The paper's LeNet-300-100 (Table 2, full MNIST): 8 % of the weights kept (12×),
6-bit shared weights and 5-bit indices (32×), Huffman coding (40×); error 1.64 % → 1.58 %.

Pruned weights must stay zero: `share_pruned_` clusters only the kept weights and gives the
pruned ones a codebook entry of its own that stays 0; `finetune_shared_` trains the shared
values (Han et al. eq. 3, `labkit.share.CodebookSGD`) with the pruned weights' gradients masked.
"""
from __future__ import annotations

import functools

import pandas as pd
import torch
from torch import nn

from . import coding
from .count import layer_bits
from .validate import check_bits, check_module, check_xy, message, per_layer, prunable_layers
from .quantize import kmeans
from .share import CodebookSGD
from .train import fit


_BITS = functools.partial(check_bits, high=16)


def share_pruned_(model: nn.Module, bits, seed: int = 0) -> dict:
    """k-means weight sharing of the kept (non-zero) weights of each prunable layer, in place.

    bits: an int or {layer name: bits}; K = 2^bits shared values per layer (`validate.per_layer`:
    a layer left out of the dict is not shared and not in the result; an unknown name is a
    ValueError). Returns {layer name: (codebook (K + 1,), indices (weight's shape))},
    codebook[K] = 0 being the pruned weights' entry, so that weight == codebook[indices] exactly.
    """
    layers = prunable_layers(model, "model", "share_pruned_")
    if any(hasattr(m, "weight_mask") for _, m in layers):
        raise ValueError(message("model", "share_pruned_", "a model whose masks were made "
                                  "permanent (labkit.prune.remove_)", "a model with masks"))
    bits = per_layer(bits, [n for n, _ in layers], _BITS, "bits", "share_pruned_")
    shared = {}
    with torch.no_grad():
        for name, m in layers:
            if name not in bits:                                 # left as it is, not shared
                continue
            w = m.weight
            keep = w != 0
            K = 2 ** bits[name]
            idx = torch.full(w.shape, K, dtype=torch.int64)
            if keep.any():
                c, i = kmeans(w[keep], bits[name], seed=seed)
                idx[keep] = i
            else:
                c = torch.zeros(K, dtype=torch.float64)
            codebook = torch.cat([c.to(w.dtype), w.new_zeros(1)])
            w.copy_(codebook[idx])
            shared[name] = (codebook, idx)
    return shared


def finetune_shared_(model: nn.Module, shared: dict, X: torch.Tensor, y: torch.Tensor,
                     epochs: int = 2, lr: float = 1e-4, seed: int = 0, **fit_kwargs) -> dict:
    """Train the shared values in place (C_k ← C_k − lr·Σ_{I_i = k} ∂L/∂W_i), pruned weights kept 0.

    Updates the codebooks in `shared` and returns fit's history. Other keyword arguments go to
    `labkit.train.fit` (max_shift, batch_size, progress, ...).
    """
    check_module(model, "model", "finetune_shared_")
    mods = dict(model.named_modules())
    if not isinstance(shared, dict) or not shared:
        raise TypeError(message("shared", "finetune_shared_", "the dict share_pruned_ returned",
                                 type(shared).__name__))
    for name, entry in shared.items():
        w = getattr(mods.get(name), "weight", None)
        if (not isinstance(w, torch.Tensor) or not isinstance(entry, tuple) or len(entry) != 2
                or not all(isinstance(t, torch.Tensor) for t in entry) or entry[1].shape != w.shape):
            raise ValueError(message("shared", "finetune_shared_", "{layer name: (codebook, indices "
                                      "shaped like its weight)} from share_pruned_ on this model", name))
    check_xy(X, y, "finetune_shared_")
    hooks = []
    for name, (codebook, idx) in shared.items():
        mask = (idx != len(codebook) - 1).to(mods[name].weight.dtype)
        hooks.append(mods[name].weight.register_hook(lambda g, mask=mask: g * mask))
    try:
        opt = CodebookSGD(model, shared, lr)
        history = fit(model, X, y, epochs=epochs, lr=lr, seed=seed, optimizer=opt,
                      schedule="constant", **fit_kwargs)
    finally:
        for h in hooks:
            h.remove()
    for name, (codebook, idx) in shared.items():              # read the trained values back
        c, _ = opt.shared[id(mods[name].weight)]
        shared[name] = (c.to(codebook.dtype), idx)
    return history


def size_table(model: nn.Module, shared: dict, index_bits=5) -> pd.DataFrame:
    """Per layer and in total, the bits of each stage (dense, P, P+Q, P+Q+H) and the rates.

    shared: as returned by `share_pruned_` (codebook (K + 1,) whose last entry is the zero).
    index_bits: an int or {layer: bits} for the relative indices, every layer given (a table counts
    every layer, so here a layer missing from the dict is a ValueError, as in `shared`). Bits are counted exactly:
    dense and P by `count.layer_bits` (the workbook's one size accounting), Huffman streams by
    `coding.huffman_bits`, tables by `coding.table_bits`, fp32 codebooks and biases. Columns follow Han et al.'s Table 2.
    """
    layers = prunable_layers(model, "model", "size_table")
    names = [n for n, _ in layers]
    if not isinstance(shared, dict) or sorted(shared) != sorted(names):
        raise ValueError(message("shared", "size_table", f"a dict with one entry per prunable "
                                  f"layer {names}", type(shared).__name__))
    index_bits = per_layer(index_bits, names, _BITS, "index_bits", "size_table")
    if len(index_bits) != len(names):       # a size counts every layer: none can be left out
        raise ValueError(message("index_bits", "size_table", "an int or a dict with an entry for every "
                                 f"prunable layer {names}", sorted(set(names) - set(index_bits))))
    rows = []
    for name, m in layers:
        codebook, idx = shared[name]
        K = len(codebook) - 1
        mask = idx != K
        s = coding.sparse_streams(idx, mask, index_bits[name], K)
        E = len(s["value"])
        b = index_bits[name]
        bias = 32 * (m.bias.numel() if m.bias is not None else 0)
        value_fixed = coding.fixed_bits(K + 1 if s["fillers"] else K)
        hv, hi = coding.huffman_bits(s["value"]), coding.huffman_bits(s["index"])
        rows.append({
            "layer": name, "weights": idx.numel(), "density": s["nonzero"] / idx.numel(),
            "fillers": s["fillers"],
            "weight bits P+Q": value_fixed, "weight bits P+Q+H": hv / max(E, 1),
            "index bits P+Q": b, "index bits P+Q+H": hi / max(E, 1),
            "bits dense": layer_bits(m),
            "bits P": layer_bits(m, index_bits=b),
            "bits P+Q": E * (value_fixed + b) + 32 * K + bias,
            "bits P+Q+H": hv + hi + coding.table_bits(K + 1) + coding.table_bits(2 ** b)
                          + 32 * K + bias})
    df = pd.DataFrame(rows)
    total = {"layer": "total", "weights": df["weights"].sum(),
             "density": (df["density"] * df["weights"]).sum() / df["weights"].sum(),
             "fillers": df["fillers"].sum()}
    E = df["bits P"].sub([32 * (m.bias.numel() if m.bias is not None else 0)
                          for _, m in layers]) / (32 + pd.Series([index_bits[n] for n in names]))
    for col in ("weight bits P+Q+H", "index bits P+Q+H"):
        total[col] = (df[col] * E).sum() / E.sum()
    for col in ("weight bits P+Q", "index bits P+Q"):
        total[col] = (df[col] * E).sum() / E.sum()
    for col in ("bits dense", "bits P", "bits P+Q", "bits P+Q+H"):
        total[col] = df[col].sum()
    df = pd.concat([df, pd.DataFrame([total])], ignore_index=True)
    for stage in ("P", "P+Q", "P+Q+H"):
        df[f"rate {stage}"] = df["bits dense"] / df[f"bits {stage}"]
    return df
