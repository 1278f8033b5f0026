"""Weight sharing by k-means (Han et al. 2016, "Deep Compression", https://arxiv.org/abs/1510.00149).

Each layer's weights W are clustered into k = 2^b shared values, the codebook C, and stored as
b-bit indices I (W ≈ C[I]) plus the codebook. Lloyd's algorithm in 1-D:

    I_i = argmin_k |W_i − C_k|            (assign: nearest centroid; boundaries at midpoints)
    C_k = mean{ W_i : I_i = k }           (update)

and the shared values are fine-tuned by summing the gradients of the weights that share them:

    ∂L/∂C_k = Σ_i ∂L/∂W_i · 1(I_i = k)    (Han et al. eq. 3)

torch's kernel/wrapper split: the pure kernels (`quantize.kmeans`, `quantize.assign`,
`quantize.codebook_grad`, `quantize.finetune_codebook`) live in labkit/quantize.py and return new
tensors; this module holds what changes a model: `share_weights_` clusters every layer in place
and `CodebookSGD` is an optimizer for `train.fit` that trains only the shared values (the
"trained quantization" of the paper).
"""
from __future__ import annotations

import torch

from .quantize import assign, finetune_codebook, kmeans
from .validate import check_float, message, prunable_layers


def share_weights_(model: torch.nn.Module, bits: int, seed: int = 0) -> dict:
    """Replace every Linear / Conv weight by its k-means quantized value, in place.

    Returns {layer name: (codebook (2^bits,), indices (weight's shape))}, for `CodebookSGD`.

    A masked layer (`labkit.prune`, torch.nn.utils.prune) keeps its mask, as torch.nn.utils.prune
    would: the codebook is fitted to the kept weights only, the Parameter `weight_orig` becomes
    codebook[indices] (a pruned entry gets its nearest shared value, which the mask hides), and
    `weight` = weight_orig · mask has at most 2^bits values besides its zeros, before and after
    training with `CodebookSGD`.
    """
    layers = prunable_layers(model, "model", "share_weights_")
    shared = {}
    with torch.no_grad():
        for name, m in layers:
            if not hasattr(m, "weight_mask"):
                c, idx = kmeans(m.weight, bits, seed=seed)
            else:
                w, keep = m.weight_orig, m.weight_mask.bool()
                if not keep.any():                   # a layer pruned away: cluster all of it
                    keep = torch.ones_like(keep)
                c, kept = kmeans(w[keep], bits, seed=seed)
                idx = assign(w, c)
                idx[keep] = kept
            param = getattr(m, "weight_orig", m.weight)
            param.copy_(c[idx])
            shared[name] = (c, idx)
    for _, m in layers:
        if hasattr(m, "weight_mask"):                # weight as the next forward pass computes it
            m.weight = m.weight_orig * m.weight_mask
    return shared


class CodebookSGD(torch.optim.Optimizer):
    """Trains the shared values only: each step, C ← C − lr · ∂L/∂C (`quantize.finetune_codebook`), then
    W ← C[I]; every other parameter (biases) takes a plain SGD step. Pass it to `train.fit`:

        shared = share.share_weights_(model, bits=2)
        train.fit(model, X, y, epochs=2, lr=1e-4, optimizer=share.CodebookSGD(model, shared, 1e-4))
    """

    def __init__(self, model: torch.nn.Module, shared: dict, lr: float):
        lr = check_float(lr, "lr", "CodebookSGD", low=0)
        mods = dict(model.named_modules())
        unknown = sorted(set(shared) - set(mods))
        if unknown:
            raise ValueError(message("shared", "CodebookSGD", "keyed by layer names of model",
                                      unknown))
        self.shared = {id(getattr(mods[n], "weight_orig", mods[n].weight)): [c.clone(), idx]
                       for n, (c, idx) in shared.items()}      # a masked layer trains weight_orig
        super().__init__(list(model.parameters()), {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if id(p) in self.shared:
                    entry = self.shared[id(p)]
                    entry[0] = finetune_codebook(entry[0], entry[1], p.grad, group["lr"])
                    p.copy_(entry[0][entry[1]])
                else:
                    p.add_(p.grad, alpha=-group["lr"])
