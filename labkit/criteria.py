"""Importance criteria, sparsity penalties and the proximal step.

Which weights to prune? Three scores S ≥ 0 of a weight w, smallest pruned first
(`labkit.prune.prune_by_scores_`):

    magnitude   S = |w|                                    (Han et al. 2015)
    gradient    S = mean_b |∂L_b/∂w|                       (seed 000 §7 "按梯度大小")
    taylor      S = mean_b |w · ∂L_b/∂w|                   (Molchanov et al. 2017,
                                                            https://arxiv.org/abs/1611.06440)

where b runs over mini-batches: w · ∂L/∂w is the first-order change of the loss L when w → 0.

Penalties (seed 001 §5.2; Keras has no `model.add_regularizer`, erratum 3): `l1_penalty` Σ|w| and
`l2_penalty` Σw² are added to the loss. An L1 penalty alone drives weights towards zero but
leaves them tiny and non-zero; the proximal step of α‖w‖₁ makes exact zeros:

    prox(w) = sign(w) · max(|w| − α, 0)            (soft threshold)

Seed 003 §3.1 writes w − α·sign(w) for every weight, which flips the sign of each |w| < α
instead of setting it to zero (erratum 4).
"""
from __future__ import annotations

import torch
from torch import nn

from .train import evaluating
from .validate import check_choice, check_float, check_int, check_tensor, prunable_layers

CRITERIA = ("magnitude", "gradient", "taylor")


def soft_threshold(w: torch.Tensor, alpha: float) -> torch.Tensor:
    """The proximal step of α‖w‖₁: sign(w) · max(|w| − α, 0). Exact zeros for |w| ≤ α; no sign flips."""
    check_tensor(w, "w", "soft_threshold")
    alpha = check_float(alpha, "alpha", "soft_threshold", low=0)
    return torch.sign(w) * torch.clamp(w.abs() - alpha, min=0)


def scores(model: nn.Module, X: torch.Tensor, y: torch.Tensor, criterion: str = "magnitude",
           batch_size: int = 256, loss_fn=None) -> dict[str, torch.Tensor]:
    """Importance S of every prunable weight, {layer name: tensor of the weight's shape}.

    "magnitude": |w|;  "gradient": mean over batches b of |∂L_b/∂w|;
    "taylor": mean over batches of |w · ∂L_b/∂w| (first-order change of L when w → 0).
    The model is run in eval mode; its weights are not changed (gradients are cleared).
    """
    layers = prunable_layers(model, "model", "scores")
    check_choice(criterion, "criterion", "scores", CRITERIA)
    batch_size = check_int(batch_size, "batch_size", "scores", low=1)
    if criterion == "magnitude":
        return {n: m.weight.detach().abs().clone() for n, m in layers}
    check_tensor(X, "X", "scores")
    loss_fn = loss_fn or nn.functional.cross_entropy
    total = {n: torch.zeros_like(m.weight) for n, m in layers}
    nb = 0
    with evaluating(model):
        for i in range(0, len(X), batch_size):
            loss = loss_fn(model(X[i:i + batch_size]), y[i:i + batch_size])
            params = [getattr(m, "weight_orig", m.weight) for _, m in layers]   # leaves
            grads = torch.autograd.grad(loss, params)      # ∂L/∂w_orig = ∂L/∂w · mask
            for (n, m), g in zip(layers, grads):
                total[n] += g.abs() if criterion == "gradient" else (m.weight.detach() * g).abs()
            nb += 1
    return {n: t / nb for n, t in total.items()}


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """Σ|w| over the prunable weights (differentiable; add λ times it to the loss)."""
    return sum(m.weight.abs().sum() for _, m in prunable_layers(model, "model", "l1_penalty"))


def l2_penalty(model: nn.Module) -> torch.Tensor:
    """Σw² over the prunable weights (differentiable; add λ times it to the loss)."""
    return sum(m.weight.pow(2).sum() for _, m in prunable_layers(model, "model", "l2_penalty"))


def soft_threshold_(model: nn.Module, alpha: float) -> nn.Module:
    """Apply the proximal step sign(w)·max(|w| − α, 0) to every prunable weight, in place."""
    layers = prunable_layers(model, "model", "soft_threshold_")
    alpha = check_float(alpha, "alpha", "soft_threshold_", low=0)
    with torch.no_grad():
        for _, m in layers:
            w = m.weight_orig if hasattr(m, "weight_orig") else m.weight
            w.copy_(soft_threshold(w, alpha))
    return model


class ProximalSGD(torch.optim.SGD):
    """Proximal gradient descent (ISTA) for L(w) + λ‖w‖₁: a plain SGD step on L, then the soft
    threshold with α = lr · λ on the parameter groups that set `l1` > 0,

        w ← sign(v) · max(|v| − lr·λ, 0),   v = w − lr · ∂L/∂w

    which puts weights at exactly zero. Build it with `proximal_sgd(model, lr, l1)` and pass it
    to `train.fit(optimizer=...)`. (With Adam the step is rescaled per weight, so lr · λ is no
    longer the proximal step of the update actually taken; ISTA is the textbook method.)"""

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        for g in self.param_groups:
            if g.get("l1", 0) > 0:
                for p in g["params"]:
                    p.copy_(soft_threshold(p, g["lr"] * g["l1"]))
        return loss


def proximal_sgd(model: nn.Module, lr: float = 0.05, l1: float = 1e-4, momentum: float = 0.0) -> ProximalSGD:
    """ProximalSGD whose L1 strength λ = `l1` applies to the prunable weights (not to biases)."""
    layers = prunable_layers(model, "model", "proximal_sgd")
    lr = check_float(lr, "lr", "proximal_sgd", low=0, closed="neither")
    l1 = check_float(l1, "l1", "proximal_sgd", low=0)
    momentum = check_float(momentum, "momentum", "proximal_sgd", low=0, high=1, closed="left")
    weights = {id(getattr(m, "weight_orig", m.weight)) for _, m in layers}
    ps = list(model.parameters())
    return ProximalSGD([{"params": [p for p in ps if id(p) in weights], "l1": l1},
                        {"params": [p for p in ps if id(p) not in weights], "l1": 0.0}],
                       lr=lr, momentum=momentum)
