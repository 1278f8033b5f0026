"""Training and evaluation, done the way seed 000 §4.3 meant it.

Seed 000's `test()` calls `model.train()` (dropout and batch-norm stay in training mode) and adds
up *losses* as "accuracy" (erratum 7). `evaluate` puts the model in eval mode under
`torch.no_grad()` and reports the metrics the seed names, computed from the confusion matrix C
(C[i, j] = samples of true class i predicted as j):

    accuracy  = Σ_i C_ii / Σ C
    precision_i = C_ii / Σ_k C_ki,   recall_i = C_ii / Σ_k C_ik,   F1_i = 2·P_i·R_i / (P_i + R_i)

and the macro averages over classes (a class never predicted has precision 0, as scikit-learn's
`zero_division=0`).
"""
from __future__ import annotations

import contextlib
import time

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .validate import accepts, message, check_choice, check_float, check_int, check_module, check_tensor, check_xy
from .data import random_shift


@accepts(large="10**9 is a seed like any in [0, 2**32 − 1], the range Python, NumPy and torch all accept")
def seed_everything(seed: int) -> int:
    """Seed Python's, NumPy's and torch's global RNGs (for notebooks); returns the seed."""
    import random

    seed = check_int(seed, "seed", "seed_everything", low=0, high=2**32 - 1)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return seed


def evaluating(model: nn.Module):
    """`with evaluating(model):` runs the block with `model` in eval mode (dropout off, batch-norm
    on its running statistics) and afterwards gives every submodule the mode it had, also when
    the block raises; a frozen batch-norm inside a training model stays frozen. Yields the model.
    The one such context in labkit: predict, count.layers / latency, criteria.scores and distill
    (for the teacher) use it."""
    check_module(model, "model", "evaluating")       # now, not at `with`: a bad model fails at the call
    return _evaluating(model)


@contextlib.contextmanager
def _evaluating(model: nn.Module):
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """"auto" → CUDA when available, else CPU; "cpu"/"cuda"/torch.device as given."""
    if isinstance(device, torch.device):
        return device
    check_choice(device, "device", "resolve_device", ("auto", "cpu", "cuda"))
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for, but torch.cuda.is_available() is False.")
    return torch.device(device)


def fit(model: nn.Module, X: torch.Tensor, y: torch.Tensor, epochs: int = 30, lr: float = 2e-3,
        batch_size: int = 128, weight_decay: float = 0.0, seed: int = 0,
        max_shift: int = 2, schedule: str = "cosine",
        device: str | torch.device = "auto", loss_fn=None, X_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None,
        progress: bool = True, optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Train `model` in place with Adam and cross-entropy on (X, y). Returns a history dict.

    seed: fixes the batch order, the augmentation and dropout, so that a run is repeatable.
    max_shift: each epoch, every image is translated by a random (dy, dx) ∈ [−max_shift,
      max_shift]² pixels (`data.random_shift`); 0 turns augmentation off. Needs X as (N, C, H, W).
    schedule: "cosine" anneals the learning rate from lr to 0 over the epochs; "constant" keeps it.
    Pruned weights stay zero by themselves: `labkit.prune` keeps its masks in the model.
    loss_fn(logits, y, X) → scalar: replaces cross-entropy (used for distillation).
    progress: a bar over the epochs (tqdm); never headless (LABKIT_HEADLESS=1: papermill, nbval,
      `labkit run`, tools/nb.py), where a notebook would store its first frame, "0/30", for good.
    history: {"loss": [per epoch], "val_accuracy": [per epoch, if X_val given], "seconds"}.
    """
    check_module(model, "model", "fit")
    check_xy(X, y, "fit")
    epochs = check_int(epochs, "epochs", "fit", low=0)
    lr = check_float(lr, "lr", "fit", low=0, closed="neither")
    batch_size = check_int(batch_size, "batch_size", "fit", low=1)
    weight_decay = check_float(weight_decay, "weight_decay", "fit", low=0)
    seed = check_int(seed, "seed", "fit", low=0)
    max_shift = check_int(max_shift, "max_shift", "fit", low=0, high=8)
    check_choice(schedule, "schedule", "fit", ("cosine", "constant"))
    if max_shift and X.ndim != 4:
        raise ValueError(message("max_shift", "fit", "0 when X is not a batch of images "
                                  "(N, C, H, W)", max_shift))
    if X_val is not None:
        check_xy(X_val, y_val, "fit", "X_val", "y_val")
    dev = resolve_device(device)
    model.to(dev)
    opt = optimizer or torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
             if schedule == "cosine" else None)
    loss_fn = loss_fn or (lambda logits, target, _x: nn.functional.cross_entropy(logits, target))

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)                                  # dropout and other layer RNG
    X, y = X.to(dev), y.to(dev)
    history = {"loss": [], "val_accuracy": []}
    start = time.perf_counter()
    if progress:
        from .workbook.widgets import headless
        progress = not headless()
    for _ in tqdm(range(epochs), desc="epochs", disable=not progress, leave=False):
        model.train()
        order = torch.randperm(len(y), generator=gen).to(dev)
        Xe = random_shift(X, max_shift, gen) if max_shift else X
        total = 0.0
        for i in range(0, len(y), batch_size):
            idx = order[i:i + batch_size]
            loss = loss_fn(model(Xe[idx]), y[idx], Xe[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        if sched is not None:
            sched.step()
        history["loss"].append(total / len(y))
        if X_val is not None:
            history["val_accuracy"].append(accuracy(model, X_val, y_val, device=dev))
    history["seconds"] = time.perf_counter() - start
    return history


@torch.no_grad()
def predict(model: nn.Module, X: torch.Tensor, batch_size: int = 1024,
            device: str | torch.device = "auto") -> torch.Tensor:
    """Logits of `model` on X, in eval mode, in batches, returned on the CPU."""
    check_module(model, "model", "predict")
    dev = resolve_device(device)
    with evaluating(model.to(dev)):
        return torch.cat([model(X[i:i + batch_size].to(dev)).cpu() for i in range(0, len(X), batch_size)])


def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor, device="auto") -> float:
    """Fraction of samples whose arg-max logit is the label."""
    return float((predict(model, X, device=device).argmax(1) == y.cpu()).float().mean())


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int) -> np.ndarray:
    """C[i, j] = number of samples of true class i predicted as class j."""
    num_classes = check_int(num_classes, "num_classes", "confusion_matrix", low=1)
    for name, t in (("y_true", y_true), ("y_pred", y_pred)):
        check_tensor(t, name, "confusion_matrix", floating=False)
        if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool or t.ndim != 1:
            raise TypeError(message(name, "confusion_matrix", "a 1-D integer tensor of class labels",
                                     f"dtype {t.dtype}, shape {tuple(t.shape)}"))
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
            raise ValueError(message(name, "confusion_matrix", f"labels in [0, {num_classes - 1}]",
                                      f"range [{int(t.min())}, {int(t.max())}]"))
    if len(y_true) != len(y_pred):
        raise ValueError(message("y_pred", "confusion_matrix", f"{len(y_true)} labels like y_true",
                                  len(y_pred)))
    idx = y_true.cpu().long() * num_classes + y_pred.cpu().long()
    return torch.bincount(idx, minlength=num_classes ** 2).reshape(num_classes, num_classes).numpy()


def metrics_from_confusion(C: np.ndarray) -> dict:
    """Accuracy and macro precision / recall / F1 from a confusion matrix (zero_division = 0)."""
    if not isinstance(C, (np.ndarray, torch.Tensor, list, tuple)):
        raise TypeError(message("C", "metrics_from_confusion", "a confusion matrix (ndarray)",
                                 type(C).__name__))
    try:
        C = np.asarray(C, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(message("C", "metrics_from_confusion", "a confusion matrix of numbers",
                                 type(C).__name__)) from None
    if C.ndim != 2 or C.shape[0] != C.shape[1] or C.size == 0:
        raise ValueError(message("C", "metrics_from_confusion", "a square (K, K) matrix, K ≥ 1",
                                  f"shape {C.shape}"))
    if not np.isfinite(C).all() or (C < 0).any() or C.sum() == 0:
        raise ValueError(message("C", "metrics_from_confusion", "counts ≥ 0, finite, not all 0",
                                  C.tolist() if C.size <= 16 else f"shape {C.shape}"))
    tp = np.diag(C)
    predicted, actual = C.sum(0), C.sum(1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    pr = precision + recall
    f1 = np.divide(2 * precision * recall, pr, out=np.zeros_like(tp), where=pr > 0)
    present = actual > 0                                  # macro over classes in y_true
    return {"accuracy": float(tp.sum() / C.sum()),
            "precision": float(precision[present].mean()),
            "recall": float(recall[present].mean()),
            "f1": float(f1[present].mean())}


def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, num_classes: int | None = None,
             device: str | torch.device = "auto") -> dict:
    """Accuracy, macro precision / recall / F1 and the confusion matrix of `model` on (X, y).

    Returns {"accuracy", "precision", "recall", "f1": floats in [0, 1], "confusion": ndarray}.
    """
    check_module(model, "model", "evaluate")
    check_xy(X, y, "evaluate")
    logits = predict(model, X, device=device)
    k = num_classes or logits.shape[1]
    C = confusion_matrix(y, logits.argmax(1), k)
    return {**metrics_from_confusion(C), "confusion": C}
