"""Knowledge distillation: a small student learns from a big teacher's softened outputs.

Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network" (2015),
https://arxiv.org/abs/1503.02531

The teacher's logits z_t, divided by a temperature T > 1 before the softmax, give *soft targets*

    p_t = softmax(z_t / T),        p_s = softmax(z_s / T)         (both (N, K))

whose small probabilities ("a 7 looks a bit like a 1, not at all like a 6") carry what the
teacher learned about how classes resemble each other. The student minimizes, averaged over
the batch,

    L = (1 − α) · CE(z_s, y) + α · T² · KL(p_t ‖ p_s),
    KL(p_t ‖ p_s) = Σ_k p_t,k · (log p_t,k − log p_s,k)

The factor T² keeps the soft term's gradients (which scale as 1/T²) comparable to the hard
term's when T changes (Hinton et al. §2). α = 0 is plain supervised training, α = 1 pure
imitation of the teacher.

Seed 003 §3.3 calls its objective distillation, but min E[L(f_small(x), y)] is plain supervised
training of the student on the labels: the teacher appears nowhere in it (erratum 6). What
makes it distillation is the second term, which needs the teacher's outputs.

`kd_loss` is the pure loss; `distill` trains a student with it by handing `labkit.train.fit`
a `loss_fn(logits, y, X)` that runs the teacher on the same augmented batch X, in eval mode
and without gradients.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .validate import message, check_finite, check_float, check_module, check_tensor
from .train import evaluating, fit, resolve_device


def _check_logits(student_logits, teacher_logits, target, func: str):
    check_tensor(student_logits, "student_logits", func)
    check_tensor(teacher_logits, "teacher_logits", func)
    if student_logits.ndim != 2:
        raise ValueError(message("student_logits", func, "a 2-D tensor (N, K)",
                                  f"shape {tuple(student_logits.shape)}"))
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(message("teacher_logits", func, "a tensor of the same shape as "
                                  f"student_logits {tuple(student_logits.shape)}",
                                  f"shape {tuple(teacher_logits.shape)}"))
    if not isinstance(target, torch.Tensor) or target.dtype != torch.int64:
        raise TypeError(message("target", func, "an int64 torch.Tensor of class labels",
                                 getattr(target, "dtype", type(target).__name__)))
    if target.shape != student_logits.shape[:1]:
        raise ValueError(message("target", func, f"a tensor of shape ({student_logits.shape[0]},)",
                                  f"shape {tuple(target.shape)}"))


def soft_targets(logits: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """softmax(z / T) along the last axis: the softened probabilities (N, K). T > 0."""
    check_finite(logits, "logits", "soft_targets")          # a NaN or +Inf logit makes its row NaN
    if logits.ndim == 0 or logits.shape[-1] == 0:
        raise ValueError(message("logits", "soft_targets", "a tensor with at least one class (N, K)",
                                  f"shape {tuple(logits.shape)}"))
    T = check_float(T, "T", "soft_targets", low=0, closed="neither")
    return torch.softmax(logits / T, dim=-1)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor,
            T: float = 4.0, alpha: float = 0.9) -> torch.Tensor:
    """(1 − α)·CE(z_s, y) + α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)), the batch mean. A scalar.

    student_logits, teacher_logits: (N, K); target: (N,) int64 labels; T > 0; α ∈ [0, 1].
    Gradients flow into student_logits only (the teacher's logits are detached).
    """
    _check_logits(student_logits, teacher_logits, target, "kd_loss")
    T = check_float(T, "T", "kd_loss", low=0, closed="neither")
    alpha = check_float(alpha, "alpha", "kd_loss", low=0, high=1)
    hard = F.cross_entropy(student_logits, target)                       # mean over N
    log_p_s = F.log_softmax(student_logits / T, dim=-1)                  # (N, K)
    log_p_t = F.log_softmax(teacher_logits.detach() / T, dim=-1)         # (N, K)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1).mean()            # KL(p_t ‖ p_s), mean over N
    return (1 - alpha) * hard + alpha * T * T * kl


def distill(student: nn.Module, teacher: nn.Module, X: torch.Tensor, y: torch.Tensor,
            T: float = 4.0, alpha: float = 0.9, epochs: int = 30, lr: float = 2e-3,
            seed: int = 0, device: str | torch.device = "auto", loss=None, **fit_kwargs) -> dict:
    """Train `student` in place on (X, y) with `kd_loss` against `teacher`. Returns fit's history.

    loss: the distillation loss, fn(student_logits, teacher_logits, target, T, alpha) → scalar
    (None: `kd_loss`; notebook 05's exercise plugs in the student's own).

    The teacher is not changed: it runs in eval mode (dropout off) under torch.no_grad() on the
    very batch the student sees, augmentation included, and is put back in its former mode
    afterwards. All other keyword arguments (batch_size, max_shift, schedule, X_val, y_val,
    progress, ...) go to `labkit.train.fit`; `seed` fixes batch order, augmentation and dropout.
    """
    check_module(student, "student", "distill")
    check_module(teacher, "teacher", "distill")
    if student is teacher:
        raise ValueError(message("teacher", "distill", "a different module from the student",
                                  type(teacher).__name__))
    T = check_float(T, "T", "distill", low=0, closed="neither")
    alpha = check_float(alpha, "alpha", "distill", low=0, high=1)
    if loss is not None and not callable(loss):
        raise TypeError(message("loss", "distill", "None or a function (student_logits, teacher_logits, "
                                "target, T, alpha) → loss", type(loss).__name__))
    kd = loss or kd_loss
    if "loss_fn" in fit_kwargs:
        raise TypeError("distill() got an unexpected keyword argument 'loss_fn': "
                        "the loss is kd_loss; use labkit.train.fit for another loss.")
    dev = resolve_device(device)
    teacher.to(dev)

    def loss_fn(logits, target, Xb):
        with torch.no_grad():
            teacher_logits = teacher(Xb)                                  # (B, K), no graph
        return kd(logits, teacher_logits, target, T, alpha)

    with evaluating(teacher):
        return fit(student, X, y, epochs=epochs, lr=lr, seed=seed, device=dev, loss_fn=loss_fn,
                   **fit_kwargs)
