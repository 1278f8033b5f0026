"""Weight sharing by k-means (Han et al. 2016, "Deep Compression", https://arxiv.org/abs/1510.00149).

Each layer's weights W are clustered into k = 2^b shared values, the codebook C, and stored as
b-bit indices I (W ≈ C[I]) plus the codebook. Lloyd's algorithm in 1-D:

    I_i = argmin_k |W_i − C_k|            (assign: nearest centroid; boundaries at midpoints)
    C_k = mean{ W_i : I_i = k }           (update)

and the shared values are fine-tuned by summing the gradients of the weights that share them:

    ∂L/∂C_k = Σ_i ∂L/∂W_i · 1(I_i = k)    (Han et al. eq. 3)

Import the kernels from `labkit.quantize` (quantize.kmeans, quantize.codebook_grad,
quantize.finetune_codebook); they live here to keep each module short. For a whole model,
`share_weights_` clusters every layer in place and `CodebookSGD` is an optimizer for
`train.fit` that trains only the shared values (the "trained quantization" of the paper).
"""
from __future__ import annotations

import torch

from .validate import message, check_choice, check_float, check_int, check_tensor
from .quantize import _bits, qparams, qrange


def kmeans(x: torch.Tensor, bits: int, seed: int = 0, iters: int = 50, init: str = "linear"):
    """Weight sharing by 1-D k-means (Lloyd) → (codebook (2^bits,), indices (x's shape, int64)).

    x ≈ codebook[indices]. init (Han et al. 2016 §3.1): "linear" spaces the k = 2^bits centroids
    evenly over the range (their best; deterministic). Here they are exactly the k levels of the
    affine linear quantizer with the same bits (the range [min, max] widened to hold 0), so
    k-means starts where linear quantization ends and, since no Lloyd step raises the error,
    MSE(kmeans) ≤ MSE(linear) always. "density" starts at the quantiles of x, "random" (Forgy)
    at k values of x drawn with `seed`. Each Lloyd iteration assigns every value to its nearest
    centroid (boundaries at the midpoints) and moves each centroid to the mean of its values; a
    centroid left with no values is moved onto the value with the largest error (as
    scikit-learn does), which also never raises the error. Stops when nothing changes.
    """
    check_tensor(x, "x", "kmeans")
    bits = _bits(bits, "kmeans")
    seed = check_int(seed, "seed", "kmeans", low=0)
    iters = check_int(iters, "iters", "kmeans", low=0)
    check_choice(init, "init", "kmeans", ("linear", "density", "random"))
    if x.numel() == 0:
        raise ValueError(message("x", "kmeans", "a non-empty tensor", "an empty tensor"))
    v = x.detach().reshape(-1).double()
    k = 2 ** bits
    if init == "linear":
        q_min, q_max = qrange(bits, "affine")
        s, z = qparams(float(v.min()), float(v.max()), bits, "affine")
        c = (torch.arange(q_min, q_max + 1, dtype=torch.float64) - int(z)) * float(s)
    elif init == "density":
        c = torch.quantile(v.float(), torch.linspace(0, 1, k)).double()
    else:
        g = torch.Generator().manual_seed(seed)
        c = v[torch.randint(len(v), (k,), generator=g)].sort().values
    vs = v.sort().values                     # on sorted values a cluster is a contiguous run,
    csum = torch.cat([vs.new_zeros(1), vs.cumsum(0)])   # so its sum is a cumsum difference
    edges = _edges(vs, c)
    for _ in range(iters):
        counts = edges[1:] - edges[:-1]
        sums = csum[edges[1:]] - csum[edges[:-1]]
        c = torch.where(counts > 0, sums / counts.clamp(min=1), c)
        empty = torch.nonzero(counts == 0).reshape(-1)
        n_move = 0
        if len(empty):                       # empty centroids → the worst-fit values
            err = (vs - c.repeat_interleave(counts)) ** 2
            n_move = min(len(empty), int((err > 0).sum()))
            if n_move:
                c[empty[:n_move]] = vs[err.topk(n_move).indices]
        c = c.sort().values
        new = _edges(vs, c)
        if torch.equal(new, edges) and not n_move:
            break
        edges = new
    return c.to(x.dtype), _assign(v, c).reshape(x.shape)


def _edges(vs: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Cluster k of the sorted values vs is vs[e_k : e_(k+1)] (the same rule as `_assign`)."""
    mid = (c[1:] + c[:-1]) / 2
    n = torch.tensor([len(vs)])
    return torch.cat([torch.zeros(1, dtype=torch.int64), torch.searchsorted(vs, mid, right=True), n])


def _assign(v: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Index of the nearest of the sorted centroids c for each value of v (ties → lower)."""
    mid = (c[1:] + c[:-1]) / 2
    return torch.bucketize(v, mid, right=False)


def codebook_grad(indices: torch.Tensor, grad: torch.Tensor, k: int) -> torch.Tensor:
    """∂L/∂C_k = Σ_i ∂L/∂W_i · 1(I_i = k) (Han et al. 2016, eq. 3): the gradients summed per
    centroid. indices, grad: the same shape; returns (k,)."""
    check_tensor(indices, "indices", "codebook_grad", floating=False)
    check_tensor(grad, "grad", "codebook_grad")
    k = check_int(k, "k", "codebook_grad", low=1)
    if indices.shape != grad.shape:
        raise ValueError(message("grad", "codebook_grad", f"of the shape of indices "
                                  f"{tuple(indices.shape)}", f"shape {tuple(grad.shape)}"))
    if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= k):
        raise ValueError(message("indices", "codebook_grad", f"in [0, {k})",
                                  (int(indices.min()), int(indices.max()))))
    return torch.zeros(k, dtype=grad.dtype).index_add_(0, indices.reshape(-1).long(),
                                                       grad.reshape(-1))


def finetune_codebook(codebook: torch.Tensor, indices: torch.Tensor, grad: torch.Tensor,
                      lr: float) -> torch.Tensor:
    """One gradient step on the shared weights: C ← C − lr · ∂L/∂C (a new tensor).

    grad: ∂L/∂W of the layer whose weights are codebook[indices], e.g. `layer.weight.grad`.
    """
    check_tensor(codebook, "codebook", "finetune_codebook")
    lr = check_float(lr, "lr", "finetune_codebook", low=0)
    return codebook - lr * codebook_grad(indices, grad, len(codebook)).to(codebook.dtype)




def share_weights_(model: torch.nn.Module, bits: int, seed: int = 0) -> dict:
    """Replace every Linear / Conv weight by its k-means quantized value, in place.

    Returns {layer name: (codebook (2^bits,), indices (weight's shape))}, for `CodebookSGD`.

    A masked layer (`labkit.prune`, torch.nn.utils.prune) keeps its mask, as torch.nn.utils.prune
    would: the codebook is fitted to the kept weights only, the Parameter `weight_orig` becomes
    codebook[indices] (a pruned entry gets its nearest shared value, which the mask hides), and
    `weight` = weight_orig · mask has at most 2^bits values besides its zeros, before and after
    training with `CodebookSGD`.
    """
    from .validate import prunable_layers

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
                idx = _assign(w.detach().double(), c.double())
                idx[keep] = kept
            param = getattr(m, "weight_orig", m.weight)
            param.copy_(c[idx])
            shared[name] = (c, idx)
    for _, m in layers:
        if hasattr(m, "weight_mask"):                # weight as the next forward pass computes it
            m.weight = m.weight_orig * m.weight_mask
    return shared


class CodebookSGD(torch.optim.Optimizer):
    """Trains the shared values only: each step, C ← C − lr · ∂L/∂C (`finetune_codebook`), then
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
