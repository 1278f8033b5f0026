"""AdaRound: learn whether each int8 weight rounds up or down.

Nagel, Amjad, van Baalen, Louizos, Blankevoort 2020, "Up or Down? Adaptive Rounding for
Post-Training Quantization", https://arxiv.org/abs/2004.10568.

Rounding each weight to the nearest level minimizes each weight's own error |W − Ŵ|, not the error
of the layer's output, where the errors of a whole row add up. AdaRound chooses ⌊·⌋ or ⌈·⌉ per
weight to minimize the output error on calibration data, relaxed to a continuous problem:

    W̃ = s · clamp(⌊W/s⌋ + h(V), −127, 127),     h(V) = clip(σ(V)·(ζ − γ) + γ, 0, 1),  ζ = 1.1, γ = −0.1

    min_V  ‖f(W x) − f(W̃ x̃)‖²  +  λ Σ (1 − |2h(V) − 1|^β)

- s = max|W_c| / 127, one scale per output channel c: XNNPACK's per-channel int8, the *restricted
  symmetric* grid [−127, 127] (labkit.quantize's "symmetric" is *torch symmetric*, [−128, 127] with
  s = max|W| / 127.5; the two are compared in labkit.quantize's docstring); the
  largest |W_c| keeps its level ±127, so a quantizer that derives s from the rounded weights finds
  the same s and the same integers — `pt2e.quantize_pt2e` and the `.pte` program carry AdaRound's.
- x is the layer's input in the fp32 network, x̃ its input in the network whose earlier layers are
  already rounded: each layer also makes up for the rounding before it. f is the ReLU6 (or ReLU)
  that follows the layer, if any: errors it clips away do not count.
- V starts where h(V) = W/s − ⌊W/s⌋ (so W̃ = W); the regularizer is off for the first 20 % of
  `iters`, then β anneals 20 → 2, pushing every h(V) to 0 or 1; at the end h = [V ≥ 0].

Weights only, after BatchNorm is folded into the convolutions (`fold_bn`, what quantizers do
anyway); activations stay fp32 here and are calibrated afterwards as usual. Label-free: it needs
images, not labels. The paper optimizes 10k–20k steps per layer on 1,024 ImageNet images; to fit
2 cores labkit's default is 50 Adam steps (lr 0.02) per layer, each on 256 of 4,096 outputs sampled
once. tests/test_adaround.py checks that each layer's output error goes down; for MobileNetV2,
benchmarks/bench_mobile_latency.py measures the .pte's agreement with fp32, with AdaRound and
without (--no-adaround).
"""
from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..validate import accepts, check_finite, check_float, check_int, check_module, check_tensor, message
from ..prune import clone

ZETA, GAMMA = 1.1, -0.1
LEVELS = 127                      # restricted symmetric int8: integers in [−127, 127]


# ---------------------------------------------------------------- kernels (pure)
def scales(w: torch.Tensor) -> torch.Tensor:
    """s_c = max|W_c| / 127 per output channel: (C_out, ...) → (C_out, 1, ...), broadcastable."""
    check_finite(w, "w", "scales")                   # a NaN or Inf weight would be its channel's max
    if w.ndim < 2 or w.numel() == 0:
        raise ValueError(message("w", "scales", "a non-empty weight (C_out, ...) of a Conv2d or Linear",
                                  f"shape {tuple(w.shape)}"))
    return _scales(w)


def _scales(w: torch.Tensor) -> torch.Tensor:
    return (w.abs().flatten(1).amax(1).clamp_min(1e-12) / LEVELS).view(-1, *[1] * (w.dim() - 1))


def _no_nan(t, name: str, func: str) -> torch.Tensor:
    check_tensor(t, name, func)
    if bool(t.isnan().any()):
        raise ValueError(message(name, func, "a tensor without NaN", f"{int(t.isnan().sum())} NaN of {t.numel()} values"))
    return t


@accepts(empty="elementwise: the empty tensor maps to the empty tensor")
def h(V: torch.Tensor) -> torch.Tensor:
    """The rectified sigmoid h(V) = clip(σ(V)(ζ − γ) + γ, 0, 1): exactly 0 or 1 for |V| large
    (also h(±inf) = 1, 0). V must not hold NaN."""
    _no_nan(V, "V", "h")
    return _h(V)


def _h(V: torch.Tensor) -> torch.Tensor:
    return (torch.sigmoid(V) * (ZETA - GAMMA) + GAMMA).clamp(0, 1)


@accepts(empty="elementwise: the empty tensor maps to the empty tensor")
def h_inverse(rest: torch.Tensor) -> torch.Tensor:
    """V with h(V) = rest, for rest in (0, 1) (clamped to [0.01, 0.99]; ±inf too). No NaN."""
    _no_nan(rest, "rest", "h_inverse")
    return _h_inverse(rest)


def _h_inverse(rest: torch.Tensor) -> torch.Tensor:
    rest = rest.clamp(0.01, 0.99)
    return -torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1)


def _patches(layer: nn.Module, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """The inputs that produce the outputs at pos (P, 3) = (n, i, j): (P, groups, C_in/groups·k²)."""
    if isinstance(layer, nn.Linear):
        return x[pos[:, 0]][:, None, :]
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
    xp = F.pad(x, (pw, pw, ph, ph))
    n, i, j = pos.T
    u = torch.stack([xp[n, :, i * sh + a, j * sw + b] for a in range(kh) for b in range(kw)], 2)  # (P, C, k²)
    return u.reshape(len(pos), layer.groups if isinstance(layer, nn.Conv2d) else 1, -1)


def _apply(layer: nn.Module, patches: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The layer's outputs (P, C_out) from its input patches and weights w."""
    g = patches.shape[1]
    if g == w.shape[0] > 1:                   # depthwise: one output per group, a dot product each
        y = (patches * w.reshape(g, -1)).sum(-1)
    else:
        y = torch.einsum("pgi,goi->pgo", patches, w.reshape(g, w.shape[0] // g, -1)).flatten(1)
    return y if layer.bias is None else y + layer.bias


def _positions(layer: nn.Module, x: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    """n output positions (n_image, i, j) drawn without replacement: (min(n, all), 3)."""
    if isinstance(layer, nn.Linear):
        flat = torch.randperm(len(x), generator=g)[:n]
        return torch.stack([flat, 0 * flat, 0 * flat], 1)
    (kh, kw), (sh, sw), (ph, pw) = layer.kernel_size, layer.stride, layer.padding
    H, W = (x.shape[2] + 2 * ph - kh) // sh + 1, (x.shape[3] + 2 * pw - kw) // sw + 1
    flat = torch.randperm(len(x) * H * W, generator=g)[:n]
    return torch.stack([flat // (H * W), flat // W % H, flat % W], 1)


def round_layer(layer: nn.Module, x: torch.Tensor, x_q: torch.Tensor, clamp=None, iters: int = 50,
                positions: int = 4096, batch: int = 256, lam: float = 0.01, lr: float = 2e-2,
                seed: int = 0) -> tuple[torch.Tensor, dict]:
    """AdaRound one Conv2d/Linear: integer weights W_int (same shape, in [−127, 127]), each ⌊W/s⌋ or
    ⌈W/s⌉, chosen to minimize ‖f(W x) − f(s·W_int x̃)‖² on `positions` sampled outputs; `clamp` is
    f's (low, high) or None. Also returns the output error of nearest rounding and of AdaRound."""
    check_module(layer, "layer", "round_layer")
    if not isinstance(layer, (nn.Conv2d, nn.Linear)):
        raise TypeError(message("layer", "round_layer", "an nn.Conv2d or nn.Linear", type(layer).__name__))
    check_finite(layer.weight.detach(), "layer", "round_layer")
    for name, t in (("x", x), ("x_q", x_q)):
        check_finite(t, name, "round_layer")
        if t.ndim != (2 if isinstance(layer, nn.Linear) else 4) or len(t) == 0:
            raise ValueError(message(name, "round_layer", "a non-empty batch of the layer's inputs",
                                      f"shape {tuple(t.shape)}"))
    if x_q.shape != x.shape:
        raise ValueError(message("x_q", "round_layer", f"shaped like x {tuple(x.shape)}", f"shape {tuple(x_q.shape)}"))
    if clamp is not None and (not isinstance(clamp, tuple) or len(clamp) != 2):
        raise TypeError(message("clamp", "round_layer", "None or a (low, high) tuple", clamp))
    iters = check_int(iters, "iters", "round_layer", low=0)
    positions = check_int(positions, "positions", "round_layer", low=1)
    batch = check_int(batch, "batch", "round_layer", low=1)
    lam = check_float(lam, "lam", "round_layer", low=0)
    lr = check_float(lr, "lr", "round_layer", low=0, closed="neither")
    seed = check_int(seed, "seed", "round_layer", low=0)
    g = torch.Generator().manual_seed(seed)
    w = layer.weight.detach()
    s = _scales(w)
    ws = w / s
    floor = ws.floor()
    fixed = ws.abs() >= LEVELS - 0.5            # the channel's largest weight stays at ±127: s is kept
    pos = _positions(layer, x, positions, g)
    f = (lambda y: y.clamp(*clamp)) if clamp else (lambda y: y)
    with torch.no_grad():
        target = f(_apply(layer, _patches(layer, x, pos), w))                  # (P, C_out)
    P = _patches(layer, x_q, pos)

    def error(w_int, rows=slice(None)):
        return (f(_apply(layer, P[rows], s * w_int)) - target[rows]).pow(2).sum(1).mean()

    nearest = ws.round().clamp(-LEVELS, LEVELS)
    V = _h_inverse(ws - floor).requires_grad_(True)
    opt = torch.optim.Adam([V], lr=lr)
    warm = int(0.2 * iters)
    for it in range(iters):
        rows = torch.randint(len(pos), (min(batch, len(pos)),), generator=g)
        hv = torch.where(fixed, nearest - floor, _h(V))
        loss = error((floor + hv).clamp(-LEVELS, LEVELS), rows)
        if it >= warm:
            beta = 20 + (2 - 20) * (it - warm) / max(1, iters - warm)
            loss = loss + lam * (1 - (2 * hv - 1).abs().pow(beta)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        w_int = torch.where(fixed, nearest, (floor + (V >= 0).float()).clamp(-LEVELS, LEVELS))
        return w_int, dict(error_nearest=error(nearest).item(), error_adaround=error(w_int).item())


# ---------------------------------------------------------------- model wrappers
def fold_bn(model: nn.Module) -> nn.Module:
    """A copy of `model` (eval) with every BatchNorm2d that follows a Conv2d in an nn.Sequential
    folded into it (torch.nn.utils.fusion.fuse_conv_bn_eval) and replaced by nn.Identity."""
    check_module(model, "model", "fold_bn")
    model = clone(model).eval()
    for m in model.modules():
        if isinstance(m, nn.Sequential):
            for i in range(len(m) - 1):
                if isinstance(m[i], nn.Conv2d) and isinstance(m[i + 1], nn.BatchNorm2d):
                    m[i], m[i + 1] = fuse_conv_bn_eval(m[i], m[i + 1]), nn.Identity()
    return model


def _layers(module: nn.Module) -> list[tuple[nn.Module, tuple | None]]:
    """[(Conv2d/Linear, (low, high) of the ReLU6/ReLU right after it in its nn.Sequential, or None)]
    in the order the layers run (children in registration order)."""
    out = []
    kids = list(module.children())
    for i, k in enumerate(kids):
        if not isinstance(k, (nn.Conv2d, nn.Linear)):
            out += _layers(k)
            continue
        nxt = next((n for n in kids[i + 1:] if not isinstance(n, nn.Identity)), None)
        if not isinstance(module, nn.Sequential):
            nxt = None
        out.append((k, (nxt.min_val, nxt.max_val) if isinstance(nxt, nn.Hardtanh)      # ReLU6 is one
                    else (0.0, float("inf")) if isinstance(nxt, nn.ReLU) else None))
    return out


class _Stop(Exception):
    pass


def _input_of(block: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What `layer` receives when `block` runs on x (the block stops there)."""
    seen = []

    def hook(_, inputs):
        seen.append(inputs[0].detach())
        raise _Stop

    handle = layer.register_forward_pre_hook(hook)
    try:
        block(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    return seen[0]


def adaround(model: nn.Module, calibration: torch.Tensor, iters: int = 50, positions: int = 4096,
             lam: float = 0.01, seed: int = 0) -> nn.Module:
    """A BatchNorm-folded copy of `model` whose Conv2d/Linear weights are s · W_int, W_int chosen by
    AdaRound (layer by layer in order, `iters` Adam steps each on `positions` outputs sampled from
    the `calibration` images (N, C, H, W)). The model must be an nn.Sequential or have a
    `features` nn.Sequential (MobileNetV2); layers outside it (the classifier, whose input is
    one vector per image) are rounded to nearest. `model` is not modified. Each layer's errors
    before and after are in the returned model's `adaround_errors` list."""
    check_module(model, "model", "adaround")
    check_tensor(calibration, "calibration", "adaround")
    iters = check_int(iters, "iters", "adaround", low=0)
    positions = check_int(positions, "positions", "adaround", low=1)
    lam = check_float(lam, "lam", "adaround", low=0)
    seed = check_int(seed, "seed", "adaround", low=0)
    features = model if isinstance(model, nn.Sequential) else getattr(model, "features", None)
    if not isinstance(features, nn.Sequential):
        raise TypeError(message("model", "adaround", "an nn.Sequential or have a 'features' nn.Sequential",
                                type(model).__name__))
    reference = fold_bn(model)
    rounded = clone(reference)

    def blocks(m):        # a Sequential model is one block; MobileNetV2's are its features
        return [m] if isinstance(model, nn.Sequential) else list(m.features)

    x = x_q = calibration.detach()
    errors, done = [], set()
    with torch.no_grad():
        for block, block_q in zip(blocks(reference), blocks(rounded)):
            for (layer, clamp), (layer_q, _) in zip(_layers(block), _layers(block_q)):
                inputs = _input_of(block, layer, x), _input_of(block_q, layer_q, x_q)
                with torch.enable_grad():
                    w_int, err = round_layer(layer, *inputs, clamp=clamp, iters=iters, positions=positions,
                                             lam=lam, seed=seed + len(errors))
                layer_q.weight.copy_(scales(layer.weight) * w_int)
                errors.append(err)
                done.add(id(layer_q))
            x, x_q = block(x), block_q(x_q)
        for m in rounded.modules():                      # the rest: nearest
            if isinstance(m, (nn.Conv2d, nn.Linear)) and id(m) not in done:
                s = scales(m.weight)
                m.weight.copy_(s * (m.weight / s).round().clamp(-LEVELS, LEVELS))
    rounded.adaround_errors = errors
    return rounded
