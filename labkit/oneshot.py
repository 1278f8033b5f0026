"""One-shot pruning of a whole transformer, layer by layer, from calibration data.

`llm_prune` and `sparsegpt` prune one Linear W (out, in) given its inputs X (N, in). A model is
pruned the way the Wanda and SparseGPT references do it (Sun et al. 2023,
https://arxiv.org/abs/2306.11695; Frantar & Alistarh 2023, https://arxiv.org/abs/2301.00774):
**sequentially**, in the order the forward pass calls the Linears. Stage s holds the Linears that
read the same input tensor (Q, K, V of a BERT layer: one stage; the GPT's fused c_attn: one); its
statistics are collected by forward hooks on the model *with stages 1 … s−1 already pruned*, so
each layer sees the inputs it will see after pruning:

    for stage s = 1 … S:
        X_s  ← inputs of stage s on the calibration batches (model pruned up to s − 1)
        magnitude: S_ij = |W_ij|              (no data)
        Wanda:     S_ij = |W_ij| · ‖X_j‖₂     (sum of squares of each input channel)
        SparseGPT: H = X_sᵀ X_s → Ŵ (masked and updated, optionally on a `bits`-bit row grid)

A pass stops as soon as the stage's Linears have seen the batch (the rest of the model is not
run), so the S passes cost about S/2 forward passes. `sequential=False` collects every
statistic once, on the dense model (`activations.collect`): one pass, slightly worse.

`finetune_` is the short sparse fine-tune after one-shot pruning: the keep-masks are attached with
`prune.apply_masks_` (the notebooks 01–02 machinery, pruned weights stay 0 under Adam), the
language model is trained on random windows with next-token cross-entropy, then `prune.remove_`.

    pruned, masks = oneshot.prune_model(model, calib_batches, "sparsegpt", nm=(2, 4))
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

from . import activations, llm_prune, prune
from .sparsegpt import row_quantizer
from .validate import check_bits, check_bool, check_choice, check_float, check_int, check_module, check_tensor, message


class _Stop(Exception):
    """Raised by a hook once the watched stage has seen its batch: the rest of the forward is skipped."""


def _call(model, batch, func):
    if isinstance(batch, dict):
        return model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    if isinstance(batch, torch.Tensor):
        return model(batch)
    raise TypeError(message("batches", func, "batches that are tensors, dicts or tuples", type(batch).__name__))


@torch.no_grad()
def stages(model: nn.Module, batch, exclude=("lm_head",)) -> list[list[str]]:
    """The model's Linears (but `exclude`) in the order one forward pass on `batch` calls them,
    grouped: consecutive Linears reading the same input tensor form one stage → [[name, ...], ...]."""
    model = check_module(model, "model", "stages")
    watched = activations.linears(model, exclude=exclude)
    order: list[tuple[str, torch.Tensor]] = []       # the input itself is held: its memory is not reused

    def hook(name):
        def fn(module, args):
            if all(name != n for n, _ in order):
                order.append((name, args[0]))
        return fn

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in watched.items()]
    was_training = model.training
    try:
        model.eval()
        _call(model, batch, "stages")
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    groups: list[list[str]] = []
    for i, (name, x) in enumerate(order):
        if i and x is order[i - 1][1]:
            groups[-1].append(name)
        else:
            groups.append([name])
    return groups


@torch.no_grad()
def _stage_inputs(model, batches, names, need_H):
    """{name: (sum of squares (in,), H or None)} of the stage's inputs over all batches, float64."""
    acc = {}
    seen = set()

    def hook(name):
        def fn(module, args):
            x = args[0].detach().reshape(-1, args[0].shape[-1]).double()
            s, H = acc.get(name, (torch.zeros(x.shape[1], dtype=torch.float64), None))
            if need_H:
                H = (torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64) if H is None else H).addmm_(x.T, x)
            acc[name] = (s + (x * x).sum(0), H)
            seen.add(name)
            if seen >= set(names):
                raise _Stop
        return fn

    modules = dict(model.named_modules())
    handles = [modules[n].register_forward_pre_hook(hook(n)) for n in names]
    try:
        for batch in batches:
            seen.clear()
            try:
                _call(model, batch, "prune_model")
            except _Stop:
                pass
    finally:
        for h in handles:
            h.remove()
    return acc


@torch.no_grad()
def prune_model(model: nn.Module, batches, criterion: str = "wanda", amount: float = 0.5,
                nm: tuple[int, int] | None = None, scope: str | None = None, sequential: bool = True,
                bits: int | None = None, block_size: int = 128, damp: float = 0.01,
                exclude=("lm_head",)) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A pruned copy of `model` and its keep-masks {Linear name: bool (out, in)}; `model` unchanged.

    criterion: "magnitude", "wanda" or "sparsegpt"; `amount` unstructured (per layer for
    magnitude, per row for Wanda unless `scope` says otherwise; per block for SparseGPT) or
    nm=(n, m) (2:4, 4:8). bits: SparseGPT's joint quantization (kept weights on a per-row
    `bits`-bit grid; None: fp weights). batches: a list of calibration batches (tensors, dicts
    or tuples, as `activations.collect`); magnitude reads none of them. Every Linear but `exclude`
    is pruned (default: all but the GPT's tied head)."""
    model = check_module(model, "model", "prune_model")
    check_choice(criterion, "criterion", "prune_model", llm_prune.CRITERIA)
    amount = check_float(amount, "amount", "prune_model", low=0, high=1, closed="left")
    sequential = check_bool(sequential, "sequential", "prune_model")
    if nm is not None and (not isinstance(nm, tuple) or len(nm) != 2):
        raise TypeError(message("nm", "prune_model", "None or a tuple (n, m)", nm))
    if bits is not None:
        bits = check_bits(bits, "bits", "prune_model", low=2, high=8)
        if criterion != "sparsegpt":
            raise ValueError(message("bits", "prune_model", "None unless criterion is 'sparsegpt'", bits))
    if not isinstance(batches, (list, tuple)) or not batches:
        raise TypeError(message("batches", "prune_model", "a non-empty list of calibration batches",
                                type(batches).__name__))
    pruned = prune.clone(model)
    was_training = pruned.training
    pruned.eval()
    modules = dict(pruned.named_modules())
    plan = stages(pruned, batches[0], exclude)
    options = {"block_size": block_size, "damp": damp} if criterion == "sparsegpt" else {}
    once = None
    if criterion != "magnitude" and not sequential:
        once = activations.collect(pruned, batches, hessian=criterion == "sparsegpt", exclude=exclude)
    masks = {}
    for names in plan:
        stats = None
        if criterion != "magnitude":
            stats = ({n: (once[n].sum_sq, once[n].H) for n in names} if once is not None
                     else _stage_inputs(pruned, batches, names, criterion == "sparsegpt"))
        for n in names:
            layer = modules[n]
            if criterion == "sparsegpt" and bits is not None:
                options["quantize"] = row_quantizer(layer.weight, bits)
            X = None if stats is None else stats[n][0].sqrt().to(layer.weight.dtype)   # ‖X_j‖₂ (in,)
            H = None if stats is None else stats[n][1]
            masks[n] = llm_prune.prune_linear_(layer, criterion, amount, nm, X=X if criterion == "wanda" else None,
                                               H=H, **({"scope": scope} if scope and criterion != "sparsegpt" else {}),
                                               **options)
    pruned.train(was_training)
    return pruned, masks


def sparsity(masks: dict[str, torch.Tensor]) -> float:
    """The fraction of pruned weights over all the masks {name: keep-mask}."""
    if not isinstance(masks, dict) or not masks:
        raise TypeError(message("masks", "sparsity", "a non-empty dict {name: keep-mask}", type(masks).__name__))
    total = sum(check_tensor(m, "masks", "sparsity", floating=False).numel() for m in masks.values())
    return 1 - sum(int(m.sum()) for m in masks.values()) / total


def model_bytes(model: nn.Module, names, n: int = 2, m: int = 4, value_bits: int = 16,
                index_bits: int = 32) -> dict[str, int | None]:
    """`llm_prune.compressed_bytes` summed over the Linears `names` of `model`: {"dense", "nm", "csr"}
    ("nm": None unless every one of them is n:m)."""
    model = check_module(model, "model", "model_bytes")
    modules = dict(model.named_modules())
    if isinstance(names, str) or not names or any(not isinstance(modules.get(k), nn.Linear) for k in names):
        raise ValueError(message("names", "model_bytes", "a non-empty list of the model's Linear names", names))
    per = [llm_prune.compressed_bytes(modules[k].weight.detach(), n, m, value_bits, index_bits) for k in names]
    return {f: (None if any(p[f] is None for p in per) else sum(p[f] for p in per)) for f in ("dense", "nm", "csr")}


def finetune_(model: nn.Module, masks: dict[str, torch.Tensor], ids: torch.Tensor, steps: int = 50,
              batch_size: int = 16, T: int = 128, lr: float = 3e-4, seed: int = 0) -> dict:
    """Sparse fine-tune of a language model in place (model(idx (B, T)) → logits (B, T, V)):
    `masks` attached by `prune.apply_masks_` (pruned weights stay 0), `steps` Adam steps of
    next-token cross-entropy on batch_size random windows of T + 1 ids of the 1-D `ids` (seeded),
    masks folded by `prune.remove_` at the end → {"loss": [per step], "seconds"}."""
    from .text import calibration

    model = check_module(model, "model", "finetune_")
    if not isinstance(masks, dict) or not masks:
        raise TypeError(message("masks", "finetune_", "a non-empty dict {name: keep-mask}", type(masks).__name__))
    steps = check_int(steps, "steps", "finetune_", low=0, high=100_000)
    batch_size = check_int(batch_size, "batch_size", "finetune_", low=1)
    T = check_int(T, "T", "finetune_", low=1)
    lr = check_float(lr, "lr", "finetune_", low=0, closed="neither")
    seed = check_int(seed, "seed", "finetune_", low=0)
    windows = calibration(ids, steps * batch_size or 1, T + 1, seed)     # validates ids
    prune.apply_masks_(model, masks)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    was_training = model.training
    history, start = {"loss": []}, time.perf_counter()
    torch.manual_seed(seed)
    try:
        model.train()
        for s in range(steps):
            w = windows[s * batch_size: (s + 1) * batch_size]
            logits = model(w[:, :-1])
            loss = F.cross_entropy(logits.transpose(1, 2), w[:, 1:])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history["loss"].append(loss.item())
    finally:
        prune.remove_(model)
        model.train(was_training)
    history["seconds"] = time.perf_counter() - start
    return history
