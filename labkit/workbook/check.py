"""Automatic checks for the exercises: write the core of a technique, get specific feedback.

    from labkit import check
    def my_threshold(w, tau):
        ...
    check.threshold(my_threshold)

Each check runs the student's function on edge cases and seeded random cases, smallest first,
against labkit's reference implementation (itself tested against torch where they overlap). It
prints how many cases passed or, at the first failure, the smallest failing input, what was
expected and what came back, and a hint — never the solution. A function that still raises
NotImplementedError is reported as "not implemented yet", so an unsolved notebook runs to the end.
Every check returns True (all passed) or False; `use` then picks the function the later cells run:
the student's once it passed, labkit's reference (with a note) until then.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .. import coding, distill, lowrank, prune, quantize, structured, train
from ..validate import message


def _fmt(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"tensor{tuple(x.shape)} {x.detach().flatten()[:8].tolist()}" + ("…" if x.numel() > 8 else "")
    if isinstance(x, (list, tuple)) and x and isinstance(x[0], torch.Tensor):
        return "[" + ", ".join(_fmt(t) for t in x) + "]"
    if isinstance(x, nn.Linear):
        return f"Linear({x.in_features}, {x.out_features})"
    return repr(x)


def _run(name: str, fn, cases: list[dict], compare, hint) -> bool:
    """cases: [{"args": tuple, "size": int}]; compare(args, got) → None if right, else a message."""
    if not callable(fn):
        raise TypeError(message("fn", f"check.{name}", "a function", type(fn).__name__))
    cases = sorted(cases, key=lambda c: c["size"])
    for case in cases:
        args = tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in case["args"])
        try:
            got = fn(*args)
        except NotImplementedError:
            print(f"… {name}: not implemented yet — write the function, then run this cell again.")
            return False
        except Exception as e:  # noqa: BLE001 — report the student's error with the input
            print(f"✗ {name}: raised {type(e).__name__}: {e}\n  on input {', '.join(map(_fmt, case['args']))}")
            return False
        for a, b in zip(args, case["args"]):
            if isinstance(a, torch.Tensor) and not torch.equal(a, b):
                print(f"✗ {name}: changed its input {_fmt(b)} in place; return a new tensor instead.")
                return False
        problem = compare(case["args"], got)
        if problem:
            print(f"✗ {name}: fails on the smallest failing input {', '.join(map(_fmt, case['args']))}\n"
                  f"  {problem}\n  hint: {hint(case['args'], got)}")
            return False
    print(f"✓ {name}: all {len(cases)} cases passed (edge cases and random ones).")
    return True


def use(fn, reference, passed: bool):
    """The function the rest of the notebook runs with: the student's `fn` once its check passed,
    else labkit's `reference`, with a visible note, so an unsolved copy still runs to the end.

        ok = check.threshold(my_threshold)
        threshold = check.use(my_threshold, prune.threshold, ok)      # later cells call threshold()
    """
    if not callable(fn) or not callable(reference):
        raise TypeError(message("fn", "check.use", "a function (and reference a function)",
                                type(fn if not callable(fn) else reference).__name__))
    if not isinstance(passed, bool):
        raise TypeError(message("passed", "check.use", "a bool (what the check returned)", passed))
    name = getattr(fn, "__name__", "your function")
    if passed:
        print(f"→ the cells below run your {name}.")
        return fn
    ref = f"{getattr(reference, '__module__', 'labkit')}.{getattr(reference, '__qualname__', 'reference')}"
    print(f"→ the cells below run labkit's {ref} until your {name} passes its check.")
    return reference


def _same(expected, got, atol=1e-6) -> str | None:
    if not isinstance(got, torch.Tensor):
        return f"expected a tensor, got {type(got).__name__}"
    if got.shape != expected.shape:
        return f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
    if not torch.allclose(got.to(expected.dtype), expected, atol=atol, rtol=1e-5):
        return f"expected {_fmt(expected)}\n  got      {_fmt(got)}"
    return None


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _linear(n_in: int, n_out: int, gen: torch.Generator) -> nn.Linear:
    """nn.Linear with its default init (uniform, bound 1/√n_in) drawn from `gen`: a check never
    draws from, nor reseeds, the student's global RNG."""
    layer = nn.utils.skip_init(nn.Linear, n_in, n_out)
    bound = 1 / math.sqrt(n_in)
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=gen)
        layer.bias.uniform_(-bound, bound, generator=gen)
    return layer


# ------------------------------------------------------------------ 00: metrics
def metrics_from_confusion(fn) -> bool:
    """fn(C) → {"accuracy", "precision", "recall", "f1"} from a confusion matrix C (K, K), C[i, j] =
    samples of true class i predicted as j: macro averages over the classes present in y_true, 0
    where a class is never predicted (scikit-learn's zero_division=0)."""
    cases = [{"args": (torch.tensor([[5, 0], [0, 5]]).numpy(),), "size": 4},
             {"args": (torch.tensor([[3, 1], [2, 4]]).numpy(),), "size": 4},
             {"args": (torch.tensor([[2, 0, 0], [1, 0, 0], [0, 0, 3]]).numpy(),), "size": 9},   # class 1 never predicted
             {"args": (torch.tensor([[4, 1, 0], [0, 0, 0], [1, 0, 2]]).numpy(),), "size": 9}]   # class 1 absent
    for i in range(10):
        k = 2 + i % 6
        cases.append({"args": (torch.randint(0, 20, (k, k), generator=_gen(i)).numpy(),), "size": k * k})

    def compare(args, got):
        want = train.metrics_from_confusion(*args)
        if not isinstance(got, dict) or set(want) - set(got):
            return f"expected a dict with keys {sorted(want)}, got {got!r}"
        wrong = {k: (round(float(got[k]), 6), round(want[k], 6)) for k in want if abs(float(got[k]) - want[k]) > 1e-9}
        return f"(got, expected): {wrong}" if wrong else None

    def hint(args, got):
        return ("precision_k = C[k, k] / column sum k (0 if the column is empty), recall_k = C[k, k] / row sum k; "
                "F1_k = 2PR/(P+R) (0 if P+R = 0); average over the classes whose row sum is > 0.")

    return _run("metrics_from_confusion", fn, cases, compare, hint)


# ------------------------------------------------------------------ 01: threshold pruning
def threshold(fn) -> bool:
    """fn(w, tau) → a new tensor with every |w| < τ set to 0 (seed 001 §4.2)."""
    cases = [{"args": (torch.tensor([2.0, -2.0, 1.0, -1.0, 3.0]), 2.0), "size": 5},
             {"args": (torch.tensor([[1., 2, 0, 3], [4, 0, 5, 6], [7, 8, 0, 9]]), 2.0), "size": 12},
             {"args": (torch.tensor([0.5, -0.5]), 0.0), "size": 2}]
    for i in range(20):
        w = torch.randn(3 + i, 4, generator=_gen(i))
        cases.append({"args": (w, float(w.abs().median())), "size": w.numel()})

    def hint(args, got):
        w, tau = args
        if isinstance(got, torch.Tensor) and torch.equal(got, w.masked_fill(w.abs() <= tau, 0)):
            return "a weight equal to τ is kept: the rule is strict, |w| < τ."
        if isinstance(got, torch.Tensor) and torch.equal(got, w.masked_fill(w < tau, 0)):
            return "negative weights are large too: compare the magnitude |w| with τ."
        return "prune by magnitude, keep every other weight unchanged."

    return _run("threshold", fn, cases, lambda a, got: _same(prune.threshold(*a), got), hint)


# ------------------------------------------------------------------ 02: global magnitude mask
def global_magnitude_mask(fn) -> bool:
    """fn(weights: list of tensors, amount) → list of bool keep-masks that prune the
    round(amount · N) smallest |w| over all N weights together (global_unstructured)."""
    cases = [{"args": ([torch.tensor([0.1, -3.0]), torch.tensor([[2.0, -0.2], [0.3, 1.0]])], 0.5), "size": 6},
             {"args": ([torch.tensor([1.0, -2.0, 3.0])], 0.0), "size": 3}]
    for i in range(15):
        ws = [torch.randn(4 + i, 3, generator=_gen(i)) * (j + 1) for j in range(3)]
        cases.append({"args": (ws, 0.1 + 0.05 * i), "size": sum(w.numel() for w in ws)})

    def compare(args, got):
        ref = prune.smallest_masks(list(args[0]), args[1], absolute=True)
        if not isinstance(got, (list, tuple)) or len(got) != len(ref):
            return f"expected a list of {len(ref)} masks, got {type(got).__name__}"
        for r, g in zip(ref, got):
            problem = _same(r, torch.as_tensor(g).bool(), atol=0)
            if problem:
                return problem
        return None

    def hint(args, got):
        ws, amount = args
        if isinstance(got, (list, tuple)) and len(got) == len(ws):
            k = [int((~torch.as_tensor(g).bool()).sum()) for g in got]
            if all(ki == round(amount * w.numel()) for ki, w in zip(k, ws)):
                return "this prunes each layer by `amount`; the threshold must be one for all layers together."
            total = sum(w.numel() for w in ws)
            if sum(k) != round(amount * total):
                return f"exactly round(amount · N) = {round(amount * total)} weights must go, not {sum(k)}."
        return "rank all |w| of all layers together; the k smallest are pruned (mask False)."

    return _run("global_magnitude_mask", fn, cases, compare, hint)


# ------------------------------------------------------------------ 03: filters by L1 norm
def keep_filters(fn) -> bool:
    """fn(w (C_out, C_in, kh, kw), amount) → sorted indices of the filters kept: all but the
    round(amount · C_out) filters of smallest L1 norm Σ|F_j| (Li et al. 2017)."""
    cases = []
    for i in range(12):
        w = torch.randn(4 + i, 3, 3, 3, generator=_gen(i))
        w[0] *= 0.1                                              # one clearly weak filter
        cases.append({"args": (w, 0.25 + 0.02 * i), "size": w.numel()})

    def hint(args, got):
        w, amount = args
        l2 = torch.linalg.vector_norm(w.flatten(1), dim=1)
        n_keep = w.shape[0] - round(amount * w.shape[0])
        if isinstance(got, torch.Tensor) and torch.equal(got.sort().values, l2.topk(n_keep).indices.sort().values):
            return "that ranks filters by their L2 norm; Li et al. use the L1 norm Σ|w|."
        return "one norm per output filter (dimension 0), summed over its input channels and kernel."

    return _run("keep_filters", fn, cases,
                lambda a, got: _same(structured.keep_filters(*a), torch.as_tensor(got).long(), atol=0), hint)


# ------------------------------------------------------------------ 04: affine scale and zero point
def affine_qparams(fn) -> bool:
    """fn(x, bits) → (scale, zero_point) of per-tensor affine quantization, as torch's
    MinMaxObserver: range widened to contain 0, s = (max − min)/(2^b − 1), z = −round(min/s)."""
    cases = [{"args": (torch.tensor([1.0, 2.0, 3.0]), 8), "size": 3},
             {"args": (torch.tensor([-1.0, 0.5, 3.0]), 4), "size": 3}]
    for i in range(15):
        x = torch.randn(10 + i, generator=_gen(i)) * (i + 1) + (i - 7)
        cases.append({"args": (x, 2 + i % 7), "size": x.numel()})

    def compare(args, got):
        _, s, z = quantize.quantize(args[0], bits=args[1], scheme="affine")
        try:
            gs, gz = (float(v) for v in got)
        except (TypeError, ValueError):
            return f"expected (scale, zero_point), got {got!r}"
        if not math.isclose(gs, float(s), rel_tol=1e-5) or round(gz) != int(z):
            return f"expected scale {float(s):.6g}, zero_point {int(z)}; got scale {gs:.6g}, zero_point {gz:g}"
        return None

    def hint(args, got):
        x, bits = args
        lo, hi = float(x.min()), float(x.max())
        try:
            gs = float(got[0])
        except Exception:  # noqa: BLE001
            return "return a pair (scale, zero_point)."
        if math.isclose(gs, (hi - lo) / (2 ** bits - 1), rel_tol=1e-5) and lo > 0:
            return "the range must contain 0 (use min(x.min(), 0) and max(x.max(), 0)) so 0 is exact."
        if math.isclose(gs, (max(hi, 0) - min(lo, 0)) / 2 ** bits, rel_tol=1e-5):
            return "b bits give 2^b − 1 steps between q_min and q_max, not 2^b."
        return "the zero point is the integer that 0.0 maps to: z = −round(min / s), clamped to [0, 2^b − 1]."

    return _run("affine_qparams", fn, cases, compare, hint)


# ------------------------------------------------------------------ 04: the straight-through estimator
def fake_quantize_ste(fn) -> bool:
    """fn(x, scale, zero_point, q_min, q_max) → x̂ = (clamp(round(x/s) + z) − z)·s whose gradient is
    1 inside [ (q_min − z)·s, (q_max − z)·s ] and 0 outside (straight-through estimator)."""
    cases = []
    for i in range(12):
        x = torch.randn(6 + i, generator=_gen(i)) * 3
        cases.append({"args": (x, 0.1 + 0.05 * i, i % 5, 0, 15 + 8 * i), "size": x.numel()})

    def run_both(args):
        x, s, z, lo, hi = args
        xr = x.clone().requires_grad_(True)
        ref = torch.fake_quantize_per_tensor_affine(xr, s, z, lo, hi)
        ref.sum().backward()
        return ref.detach(), xr.grad

    def compare(args, got):
        ref, ref_grad = run_both(args)
        problem = _same(ref, got.detach() if isinstance(got, torch.Tensor) else got, atol=1e-5)
        if problem:
            return "forward: " + problem
        xg = args[0].clone().requires_grad_(True)
        out = fn(xg, *args[1:])
        if not out.requires_grad:
            return "the output has no gradient: round() must not cut the graph (STE)"
        out.sum().backward()
        return _same(ref_grad, xg.grad, atol=0) and "backward: " + _same(ref_grad, xg.grad, atol=0)

    def hint(args, got):
        return ("forward rounds and clamps; backward passes the gradient unchanged where x was inside the "
                "clipping range and 0 where it was clamped — e.g. x + (x̂ − x).detach() times a range mask.")

    return _run("fake_quantize_ste", fn, cases, compare, hint)


# ------------------------------------------------------------------ 05: distillation loss
def kd_loss(fn) -> bool:
    """fn(student_logits, teacher_logits, target, T, alpha) → (1−α)·CE + α·T²·KL(p_t ‖ p_s), batch mean."""
    cases = []
    for i in range(12):
        g = _gen(i)
        n, k = 2 + i, 3 + i % 5
        cases.append({"args": (torch.randn(n, k, generator=g) * 3, torch.randn(n, k, generator=g) * 3,
                               torch.randint(0, k, (n,), generator=g), 1.0 + i, (i % 5) / 4), "size": n * k})

    def hint(args, got):
        s, t, y, T, a = args
        ref = distill.kd_loss(s, t, y, T, a)
        if isinstance(got, torch.Tensor) and T != 1 and a > 0:
            no_t2 = distill.kd_loss(s, t, y, T, a) - a * (T * T - 1) * _kl(t, s, T)
            if torch.allclose(got, no_t2, atol=1e-5):
                return "multiply the soft term by T²: it keeps its gradients' scale as T grows (Hinton et al.)."
            if torch.allclose(got, (1 - a) * torch.nn.functional.cross_entropy(s, y) + a * T * T * _kl(s, t, T), atol=1e-5):
                return "KL(p_teacher ‖ p_student): the teacher's softened distribution comes first."
        return f"expected {float(ref):.6f}; soften both logits by T, KL from teacher to student, mean over the batch."

    return _run("kd_loss", fn, cases, lambda a, got: _same(distill.kd_loss(*a), got, atol=1e-5), hint)


def _kl(p_logits, q_logits, T):
    lp, lq = (torch.log_softmax(z / T, -1) for z in (p_logits, q_logits))
    return (lp.exp() * (lp - lq)).sum(-1).mean()


# ------------------------------------------------------------------ 06: low rank
def svd_linear(fn) -> bool:
    """fn(layer: nn.Linear, rank) → a module computing the best rank-r approximation W_r x + b."""
    cases = []
    for i in range(8):
        layer = _linear(6 + i, 4 + i, _gen(i))
        cases.append({"args": (layer, 1 + i % 3), "size": layer.weight.numel()})

    def compare(args, got):
        layer, r = args
        if not isinstance(got, nn.Module):
            return f"expected an nn.Module, got {type(got).__name__}"
        x = torch.randn(5, layer.in_features, generator=_gen(0))
        with torch.no_grad():
            problem = _same(lowrank.svd_linear(layer, r)(x), got(x), atol=1e-4)
        n = sum(p.numel() for p in got.parameters())
        if problem:
            return problem
        if n > r * (layer.in_features + layer.out_features) + layer.out_features:
            return f"{n} parameters; a rank-{r} factorization needs r·(in + out) + out"
        return None

    def hint(args, got):
        return ("W ≈ U_r diag(S_r) V_rᵀ: the first layer maps in → r, the second r → out; the singular values "
                "belong in one of the two factors, and the bias in the second layer.")

    return _run("svd_linear", fn, cases, compare, hint)


# ------------------------------------------------------------------ 07: Huffman code lengths
def huffman_lengths(fn) -> bool:
    """fn(symbols: list of ints) → {symbol: code length} of an optimal prefix code (Huffman)."""
    cases = [{"args": ([0, 0, 0, 0, 1, 1, 2, 3],), "size": 8},              # dyadic: 1, 2, 3, 3
             {"args": ([5, 5, 5, 5, 5],), "size": 5},                       # one symbol: 1 bit
             {"args": ([1, 2],), "size": 2}]
    for i in range(12):
        sym = torch.randint(0, 3 + i, (20 + 10 * i,), generator=_gen(i)).pow(2).remainder(3 + i).tolist()
        cases.append({"args": (sym,), "size": len(sym)})

    def compare(args, got):
        freq = coding.counts(args[0])
        if not isinstance(got, dict) or set(got) != set(freq):
            return f"expected a length for each symbol {sorted(freq)}, got {got!r}"
        if any(not isinstance(l, int) or l < 1 for l in got.values()):
            return "every code length must be an int ≥ 1"
        if sum(2.0 ** -l for l in got.values()) > 1 + 1e-12:
            return "these lengths break Kraft's inequality Σ 2^−ℓ ≤ 1: no prefix code has them"
        total, best = sum(freq[s] * got[s] for s in freq), coding.huffman_bits(args[0])
        if total != best:
            return f"total {total} bits; an optimal prefix code needs {best}"
        return None

    def hint(args, got):
        return ("repeatedly merge the two least frequent subtrees; every merge adds one bit to the code of each "
                "symbol inside them. A fixed-length or ⌈−log₂ p⌉ code is a prefix code but not optimal.")

    return _run("huffman_lengths", fn, cases, compare, hint)


# ------------------------------------------------------------------ 08: fixed-point requantization
def fixed_point_multiplier(fn) -> bool:
    """fn(M) → (M0, n): M = s_w·s_x/s_y ∈ (0, 1) as M0 · 2⁻³¹ · 2⁻ⁿ, M0 = round(M₀ · 2³¹) an int32 in
    [2³⁰, 2³¹), M₀ ∈ [0.5, 1), n the right shift (Jacob et al. 2018 §2.2; TFLite's QuantizeMultiplier)."""
    from ..deploy import fixedpoint

    values = [0.5, 0.75, 0.25, 0.1, 0.3, 2.0 ** -20, 0.999, 1 - 2.0 ** -40]
    gen = _gen(0)
    values += (10 ** (-4 * torch.rand(20, generator=gen, dtype=torch.float64))).tolist()
    values += (torch.rand(10, generator=gen, dtype=torch.float64) * 0.05 * 0.03 / (6 / 255)).tolist()
    cases = [{"args": (v,), "size": i} for i, v in enumerate(values)]

    def compare(args, got):
        M0, n = fixedpoint.fixed_point_multiplier(args[0])
        if (not isinstance(got, (tuple, list)) or len(got) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in got)):
            return f"expected a pair of ints (M0, n), got {got!r}"
        if tuple(got) != (M0, n):
            return f"expected (M0, n) = ({M0}, {n}), got {tuple(got)}"
        return None

    def hint(args, got):
        M = args[0]
        try:
            g0, gn = (float(v) for v in got)
        except (TypeError, ValueError):
            return "return a pair (M0, n) of Python ints."
        if 0.5 <= g0 < 1:
            return "M0 is the int32 round(M₀ · 2³¹), not the real M₀ ∈ [0.5, 1)."
        if gn < 0 and M < 0.5:
            return "n is a right shift: M = M₀ · 2⁻ⁿ, so M = 0.1 = 0.8 · 2⁻³ has n = 3."
        if not 2 ** 30 <= g0 <= 2 ** 31:
            return "normalize first: M = M₀ · 2⁻ⁿ with M₀ ∈ [0.5, 1) (math.frexp), then M0 = round(M₀ · 2³¹)."
        if g0 == 2 ** 31:
            return "round(M₀ · 2³¹) can reach 2³¹, which no int32 holds: then M0 = 2³⁰ and n is one less."
        return "M0 = round(M₀ · 2³¹) with M₀ = M · 2ⁿ ∈ [0.5, 1); round half away from zero."

    return _run("fixed_point_multiplier", fn, cases, compare, hint)


# ------------------------------------------------------------------ 10: group-wise RTN
def groupwise(fn) -> bool:
    """fn(w, bits, group_size) → ŵ: symmetric ("restricted") round-to-nearest per group of
    `group_size` consecutive weights along the last axis (in divisible by group_size):
    s = max|w_group| / (2^(b−1) − 1), ŵ = clamp(round(w / s), −(2^(b−1) − 1), 2^(b−1) − 1) · s."""
    cases = [{"args": (torch.tensor([[-1.0, 0.5, 0.25, 2.0]]), 2, 2), "size": 4},
             {"args": (torch.tensor([[0.0, 0.0, 3.0, -1.5]]), 3, 4), "size": 4}]
    for i in range(12):
        g = (4, 8, 16, 32)[i % 4]
        w = torch.randn(2 + i, g * (1 + i % 3), generator=_gen(i)) * (0.1 + i)
        cases.append({"args": (w, 2 + i % 7, g), "size": w.numel()})

    def compare(args, got):
        w, bits, g = args
        ref = quantize.groupwise(w, bits, g, "restricted")
        step = float(w.abs().max()) / (2 ** (bits - 1) - 1)
        return _same(ref, got, atol=1e-5 * max(step, 1.0))

    def hint(args, got):
        w, bits, g = args
        if isinstance(got, torch.Tensor) and got.shape == w.shape:
            if torch.allclose(got, quantize.groupwise(w, bits, None, "restricted"), atol=1e-6):
                return "that is one scale per row; reshape to (-1, group_size) so every group gets its own."
            if torch.allclose(got, quantize.groupwise(w, bits, g, "symmetric"), atol=1e-6):
                return "that is torch's grid (max|w| / ((2^b − 1)/2)); here s = max|w| / (2^(b−1) − 1)."
        return ("w.reshape(-1, group_size); s = amax(|group|) / (2^(b−1) − 1) (guard s = 0); "
                "round, clamp to ±(2^(b−1) − 1), multiply back by s, reshape to w.shape.")

    return _run("groupwise", fn, cases, compare, hint)


# ------------------------------------------------------------------ 10: GPTQ's column update
def gptq_update(W: torch.Tensor, Hinv: torch.Tensor, j: int, q: torch.Tensor) -> torch.Tensor:
    """The reference of `gptq_column`: W with column j set to q and the columns after it moved
    by the optimal compensation δ = (w_j − q) / [H⁻¹]_jj, w_{j+1:} ← w_{j+1:} − δ · [H⁻¹]_{j, j+1:}."""
    if not all(isinstance(t, torch.Tensor) for t in (W, Hinv, q)):
        raise TypeError(message("W", "gptq_update", "tensors W (out, in), Hinv (in, in), q (out,)", type(W).__name__))
    if W.ndim != 2 or tuple(Hinv.shape) != (W.shape[1],) * 2 or tuple(q.shape) != (W.shape[0],):
        raise ValueError(message("W", "gptq_update", "(out, in) with Hinv (in, in) and q (out,)",
                                 f"W {tuple(W.shape)}, Hinv {tuple(Hinv.shape)}, q {tuple(q.shape)}"))
    if not isinstance(j, int) or isinstance(j, bool) or not 0 <= j < W.shape[1]:
        raise ValueError(message("j", "gptq_update", f"an int in [0, {W.shape[1] - 1}]", j))
    out = W.clone()
    delta = (W[:, j] - q) / Hinv[j, j]
    out[:, j] = q
    out[:, j + 1:] -= delta[:, None] * Hinv[j, j + 1:][None, :]
    return out


def gptq_column(fn) -> bool:
    """fn(W, Hinv, j, q) → a new W with column j = q (its quantized values) and the columns
    j+1: compensated: w_{j+1:} − (w_j − q) / Hinv[j, j] · Hinv[j, j+1:]; columns < j unchanged."""
    cases = []
    for i in range(10):
        g = _gen(i)
        n = 3 + i
        X = torch.randn(4 * n, n, generator=g, dtype=torch.float64)
        Hinv = torch.linalg.inv(X.T @ X + 0.1 * torch.eye(n, dtype=torch.float64))
        W = torch.randn(2 + i % 3, n, generator=g, dtype=torch.float64)
        j = i % n
        q = torch.round(W[:, j] * 4) / 4
        cases.append({"args": (W, Hinv, j, q), "size": W.numel()})

    def hint(args, got):
        W, Hinv, j, q = args
        if isinstance(got, torch.Tensor) and got.shape == W.shape:
            if torch.allclose(got, gptq_update(W, Hinv, j, 2 * W[:, j] - q), atol=1e-9):
                return "the sign: the error is w_j − q, and the later columns move by −error · Hinv[j, k] / Hinv[j, j]."
            if torch.allclose(got[:, j], W[:, j]):
                return "column j itself must become q (it is quantized now)."
        return "δ = (W[:, j] − q) / Hinv[j, j]; W[:, j+1:] −= δ[:, None] * Hinv[j, j+1:][None, :]; on a clone."

    return _run("gptq_column", fn, cases,
                lambda a, got: _same(gptq_update(*a), got, atol=1e-9), hint)


# ------------------------------------------------------------------ 09: the budgeted challenge
STORAGE = ("bits", "scheme", "granularity", "codebook", "index_bits", "huffman")


def _stored_values(w: torch.Tensor, index_bits) -> torch.Tensor:
    """The values a layer stores: every weight, or (index_bits) its non-zeros plus a 0 per filler."""
    if index_bits is None:
        return w.reshape(-1)
    stored, filler = coding.relative_index(w != 0, index_bits)
    kept = w.reshape(-1)[w.reshape(-1) != 0]
    return torch.cat([kept, w.new_zeros(int(filler.sum()))]) if filler.any() else kept


def _on_grid(v: torch.Tensor, levels: int) -> bool:
    """True if the values v and 0 lie on one uniform grid k·s of at most `levels` points (a symmetric
    or affine grid: the zero point makes 0 exact in both)."""
    d = torch.unique(torch.cat([v.double().reshape(-1), v.new_zeros(1, dtype=torch.float64)]))
    if len(d) <= 1:
        return True
    gap = float(torch.diff(d).min())
    for m in range(1, 9):                           # the step may divide the smallest gap
        k = (d / (gap / m)).round()
        step = float((d * k).sum() / (k * k).sum())  # least squares: float32 rounding in the gap
        if (d / step - k).abs().max() < 0.01:
            return float(k.max() - k.min()) <= levels - 1
    return False


def _unrepresentable(model: nn.Module, storage: dict) -> str | None:
    """Why the model's weights do not fit the declared storage, or None if they do."""
    from ..validate import prunable_layers
    bits, index_bits = storage.get("bits"), storage.get("index_bits")
    if storage.get("huffman") or bits is None:
        return None                                    # fp32 values / a codebook of the distinct values
    for name, m in prunable_layers(model, "model", "check.budget"):
        w = m.weight.detach()
        if storage.get("codebook", False):
            n = len(torch.unique(_stored_values(w, index_bits)))
            if n > 2 ** bits:
                return (f"layer {name} stores {n} distinct values (with the zero of any filler), "
                        f"more than a {bits}-bit codebook's {2 ** bits}")
            continue
        rows = [w] if storage.get("granularity", "channel") == "tensor" else list(w.flatten(1))
        for r, row in enumerate(rows):
            if not _on_grid(row, 2 ** bits):
                where = "" if len(rows) == 1 else f", channel {r}"
                return (f"layer {name}{where}: its values are not on one {bits}-bit uniform grid "
                        f"(quantize them first, e.g. ptq.quantize_weights)")
    return None


def _huffman_bytes(model: nn.Module, index_bits: int) -> int:
    """Deep Compression's P+Q+H bytes of the model's weights as they are: per layer a codebook of
    its distinct non-zero values (+ the zero), Huffman-coded indices and gaps."""
    from .. import deep_compression
    from ..validate import prunable_layers
    shared = {}
    for name, m in prunable_layers(model, "model", "check.budget"):
        w = m.weight.detach()
        values = torch.unique(w[w != 0])
        codebook = torch.cat([values, w.new_zeros(1)])
        idx = torch.full(w.shape, len(values), dtype=torch.int64)
        idx[w != 0] = torch.searchsorted(values, w[w != 0])
        shared[name] = (codebook, idx)
    table = deep_compression.size_table(model, shared, index_bits=index_bits)
    return math.ceil(float(table["bits P+Q+H"].iloc[-1]) / 8)


def budget(fn, X_test, y_test, max_bytes: int, min_accuracy: float) -> bool:
    """The budgeted challenge: fn() → (model, storage), a compressed model whose Linear / Conv
    weights are the values it stores, and how it stores them: the keywords of `count.model_bytes`
    (bits, scheme, granularity, codebook, index_bits), or {"huffman": True, "index_bits": b} for
    Deep Compression's Huffman-coded format (`deep_compression.size_table`).

    The check trusts no number it is given: it verifies that the weights fit the declared storage
    (at most 2^bits codebook values, or a uniform grid of 2^bits levels per channel), counts the
    bytes itself, measures the accuracy on (X_test, y_test) with its 95 % Wilson interval, and
    prints both against the budget: ≤ max_bytes and accuracy ≥ min_accuracy. True if both hold.
    """
    from .. import count, stats, train
    from ..validate import check_float, check_int, check_xy
    if not callable(fn):
        raise TypeError(message("fn", "check.budget", "a function returning (model, storage)", type(fn).__name__))
    check_xy(X_test, y_test, "check.budget", "X_test", "y_test")
    max_bytes = check_int(max_bytes, "max_bytes", "check.budget", low=1)
    min_accuracy = check_float(min_accuracy, "min_accuracy", "check.budget", low=0, high=1)
    try:
        got = fn()
    except NotImplementedError:
        print("… budget: not implemented yet — build your model, then run this cell again.")
        return False
    if not (isinstance(got, tuple) and len(got) == 2 and isinstance(got[0], nn.Module) and isinstance(got[1], dict)):
        print(f"✗ budget: return (model, storage), a module and a dict; got {type(got).__name__}")
        return False
    model, storage = got
    unknown = sorted(set(storage) - set(STORAGE))
    if unknown:
        print(f"✗ budget: storage keys must be among {', '.join(STORAGE)}; got {unknown}")
        return False
    if not any(isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)) for m in model.modules()):
        print("✗ budget: the model has no Linear / Conv layers to count: return the float model whose "
              "weights are the stored values (an int8 runtime model: its float source, bits=8)")
        return False
    if storage.get("huffman"):
        if storage.get("index_bits") is None:
            print("✗ budget: Huffman coding stores sparse layers: give index_bits as well")
            return False
        size = _huffman_bytes(model, storage["index_bits"])
    else:
        try:
            size = count.model_bytes(model, **storage)
        except (TypeError, ValueError) as e:
            print(f"✗ budget: count.model_bytes does not take this storage: {e}")
            return False
    problem = _unrepresentable(model, storage)
    if problem:
        print(f"✗ budget: the weights do not fit the storage {storage}: {problem}.")
        return False
    correct = round(train.accuracy(model, X_test, y_test) * len(y_test))    # k of n, exact
    acc = correct / len(y_test)
    lo, hi = stats.wilson_interval(correct, len(y_test))
    ok_size, ok_acc = size <= max_bytes, acc >= min_accuracy
    mark = "✓" if ok_size and ok_acc else "✗"
    print(f"{mark} budget: {size:,} bytes {'≤' if ok_size else '>'} {max_bytes:,} (counted by labkit for {storage}); "
          f"accuracy {acc:.3f} [{lo:.3f}, {hi:.3f}] {'≥' if ok_acc else '<'} {min_accuracy:.3f} "
          f"on {len(y_test):,} test images.")
    if not ok_size:
        print("  hint: fewer bytes — prune further, share fewer values, or entropy-code (huffman=True).")
    elif not ok_acc:
        print("  hint: more accuracy — fine-tune after pruning, or prune the small layers less.")
    return ok_size and ok_acc


# ------------------------------------------------------------------ 11: SmoothQuant's scale and its folding
def smooth_fold(gamma: torch.Tensor, beta: torch.Tensor, W: torch.Tensor, act_max: torch.Tensor,
                alpha: float):
    """The reference of `smoothquant_fold`: s_j = max|X_j|^α / max_i|W_ij|^(1−α) (labkit.smoothquant.scales,
    its 1e-5 clamps), folded: (γ / s, β / s, W diag(s)). gamma, beta, act_max (in,), W (out, in)."""
    from .. import smoothquant

    if not all(isinstance(t, torch.Tensor) for t in (gamma, beta, W, act_max)):
        raise TypeError(message("gamma", "smooth_fold", "tensors gamma, beta, act_max (in,) and W (out, in)",
                                type(gamma).__name__))
    if W.ndim != 2 or not (gamma.shape == beta.shape == act_max.shape == (W.shape[1],)):
        raise ValueError(message("W", "smooth_fold", "(out, in) with gamma, beta, act_max of shape (in,)",
                                 f"W {tuple(W.shape)}, gamma {tuple(gamma.shape)}"))
    s = smoothquant.scales(act_max, W.abs().amax(0), alpha)
    return gamma / s, beta / s, W * s


def smoothquant_fold(fn) -> bool:
    """fn(gamma, beta, W, act_max, alpha) → (gamma′, beta′, W′): the SmoothQuant scale
    s_j = max|X_j|^α / max_i|W_ij|^(1−α) folded into the LayerNorm (γ/s, β/s) and the Linear's
    columns (W diag(s)), so that LN′ → Linear′ computes what LN → Linear did."""
    cases = [{"args": (torch.ones(2), torch.zeros(2), torch.tensor([[1.0, 4.0]]), torch.tensor([4.0, 1.0]), 0.5),
              "size": 2}]
    for i in range(10):
        g = _gen(i)
        d = 3 + 2 * i
        act = torch.rand(d, generator=g) * 3 + 0.1
        act[i % d] *= 40                                           # an outlier channel
        cases.append({"args": (torch.rand(d, generator=g) + 0.5, torch.randn(d, generator=g),
                               torch.randn(2 + i, d, generator=g), act, (0.0, 0.25, 0.5, 0.75, 0.85, 1.0)[i % 6]),
                      "size": d * (3 + i)})

    def compare(args, got):
        if not isinstance(got, (tuple, list)) or len(got) != 3:
            return f"expected a tuple (gamma′, beta′, W′), got {_fmt(got)}"
        for what, r, o in zip(("gamma′", "beta′", "W′"), smooth_fold(*args), got):
            problem = _same(r, o, atol=1e-5 * max(1.0, float(r.abs().max())))
            if problem:
                return f"{what}: {problem}"
        return None

    def hint(args, got):
        gamma, beta, W, act, a = args
        s = torch.clamp(act ** a / W.abs().amax(0).clamp(min=1e-5) ** (1 - a), min=1e-5)
        if isinstance(got, (tuple, list)) and len(got) == 3 and isinstance(got[0], torch.Tensor) \
                and got[0].shape == gamma.shape:
            if torch.allclose(got[0], gamma * s, rtol=1e-4):
                return "the LayerNorm's output must shrink by s (γ / s), the weights' columns grow (W · s)."
            s2 = torch.clamp(act ** (1 - a) / W.abs().amax(0).clamp(min=1e-5) ** a, min=1e-5)
            if torch.allclose(got[0], gamma / s2, rtol=1e-4):
                return "α is the activations' exponent: s = max|X|^α / max|W|^(1−α)."
            if torch.allclose(got[0], gamma / torch.clamp(act ** a / W.abs().amax(1).max() ** (1 - a), min=1e-5),
                              rtol=1e-4):
                return "max|W_j| is per input channel j: the max over the rows, W.abs().amax(dim=0)."
        return ("s = (act_max ** α / W.abs().amax(0).clamp(min=1e-5) ** (1 − α)).clamp(min=1e-5); "
                "return gamma / s, beta / s, W * s (s broadcast over W's rows).")

    return _run("smoothquant_fold", fn, cases, compare, hint)


# ------------------------------------------------------------------ 12: an N:M mask
def nm_mask(fn) -> bool:
    """fn(scores, n, m) → bool keep-mask of scores' shape keeping the n largest of every m
    consecutive scores along the last (input) dimension (NVIDIA's 2:4 for n, m = 2, 4). Ties may be
    broken either way: a group passes when it keeps exactly n entries whose scores sum to the n largest."""
    from .. import llm_prune

    cases = [{"args": (torch.tensor([[0.1, 3.0, 2.0, 0.5]]), 2, 4), "size": 4},
             {"args": (torch.tensor([[4.0, 1.0, 2.0, 3.0, 0.0, 0.5, 9.0, 8.0]]), 2, 4), "size": 8},
             {"args": (torch.tensor([[1.0, 5.0, 2.0, 7.0, 3.0, 0.0, 6.0, 4.0]]), 4, 8), "size": 8}]
    for i in range(10):
        n, m = ((2, 4), (4, 8), (1, 4), (2, 8), (3, 4))[i % 5]
        s = torch.rand(1 + i, m * (1 + i % 4), generator=_gen(i))
        cases.append({"args": (s, n, m), "size": s.numel()})

    def compare(args, got):
        scores, n, m = args
        if not isinstance(got, torch.Tensor) or got.shape != scores.shape:
            return f"expected a bool tensor of shape {tuple(scores.shape)}, got {_fmt(got)}"
        keep = got.bool().reshape(*scores.shape[:-1], -1, m)
        groups = scores.reshape(*scores.shape[:-1], -1, m)
        if not (keep.sum(-1) == n).all():
            return f"every group of {m} must keep exactly {n}: kept {keep.sum(-1).flatten().tolist()}"
        ref = llm_prune.nm_mask(scores, n, m).reshape(groups.shape)
        if not torch.allclose((groups * keep).sum(-1), (groups * ref).sum(-1)):
            return f"expected {_fmt(ref.reshape(scores.shape))}\n  got      {_fmt(got.bool())}"
        return None

    def hint(args, got):
        scores, n, m = args
        if isinstance(got, torch.Tensor) and got.shape == scores.shape:
            if torch.equal(got.bool(), llm_prune.nm_mask(-scores, n, m)):
                return "that keeps the smallest; keep the n LARGEST scores of each group."
            if torch.equal(got.bool(), llm_prune.unstructured_mask(scores, 1 - n / m, "row")):
                return "that keeps the largest of each row; the groups are m consecutive entries."
        return ("reshape to (..., in / m, m), take topk(n, dim=-1).indices, scatter True into a zero "
                "mask of that shape, reshape back.")

    return _run("nm_mask", fn, cases, compare, hint)
