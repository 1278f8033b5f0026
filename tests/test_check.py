"""Each exercise check passes labkit's reference and catches at least two plausible wrong answers."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from labkit import check, coding, distill, lowrank, prune, quantize, structured


def not_yet(*args):
    raise NotImplementedError


def run(check_fn, fn, capsys):
    ok = check_fn(fn)
    return ok, capsys.readouterr().out


def expect_fail(check_fn, fn, capsys, hint=None):
    ok, out = run(check_fn, fn, capsys)
    assert not ok and out.startswith("✗"), out
    if hint:
        assert hint in out, out
    return out


# ---- threshold
def test_threshold(capsys):
    assert run(check.threshold, prune.threshold, capsys)[0]
    expect_fail(check.threshold, lambda w, t: w.masked_fill(w.abs() <= t, 0), capsys, "strict")
    expect_fail(check.threshold, lambda w, t: w.masked_fill(w < t, 0), capsys, "magnitude |w|")
    out = expect_fail(check.threshold, lambda w, t: w.masked_fill_(w.abs() < t, 0), capsys)
    assert "in place" in out
    ok, out = run(check.threshold, not_yet, capsys)
    assert not ok and "not implemented yet" in out


# ---- global magnitude
def per_layer(ws, amount):
    return [prune.magnitude_mask(w, amount) for w in ws]


def keeps_k_smallest(ws, amount):
    masks = prune.smallest_masks(list(ws), amount, absolute=True)
    return [~m for m in masks]


def test_global_magnitude_mask(capsys):
    assert run(check.global_magnitude_mask, lambda ws, a: prune.smallest_masks(list(ws), a, absolute=True), capsys)[0]
    expect_fail(check.global_magnitude_mask, per_layer, capsys, "one for all layers")
    expect_fail(check.global_magnitude_mask, keeps_k_smallest, capsys)
    expect_fail(check.global_magnitude_mask, lambda ws, a: prune.smallest_masks(list(ws), a, absolute=False), capsys)
    assert "not implemented" in run(check.global_magnitude_mask, not_yet, capsys)[1]


# ---- filters
def test_keep_filters(capsys):
    assert run(check.keep_filters, structured.keep_filters, capsys)[0]

    def l2(w, a):
        n = torch.linalg.vector_norm(w.flatten(1), dim=1)
        return n.topk(w.shape[0] - round(a * w.shape[0])).indices.sort().values
    expect_fail(check.keep_filters, l2, capsys)

    def wrong_axis(w, a):
        n = w.abs().sum(dim=(0, 2, 3))                           # per input channel
        k = min(len(n), w.shape[0] - round(a * w.shape[0]))
        return n.topk(k).indices.sort().values
    expect_fail(check.keep_filters, wrong_axis, capsys)


# ---- affine qparams
def ref_qparams(x, bits):
    _, s, z = quantize.quantize(x, bits=bits, scheme="affine")
    return float(s), int(z)


def test_affine_qparams(capsys):
    assert run(check.affine_qparams, ref_qparams, capsys)[0]
    expect_fail(check.affine_qparams, lambda x, b: (float(x.max() - x.min()) / (2 ** b - 1), 0), capsys)
    out = expect_fail(check.affine_qparams,
                      lambda x, b: ((float(x.max()) - float(x.min())) / (2 ** b - 1),
                                    -round(float(x.min()) / ((float(x.max()) - float(x.min())) / (2 ** b - 1)))),
                      capsys)
    assert "contain 0" in out

    def two_to_b(x, b):
        lo, hi = min(float(x.min()), 0), max(float(x.max()), 0)
        s = (hi - lo) / 2 ** b
        return s, min(max(-round(lo / s), 0), 2 ** b - 1)
    expect_fail(check.affine_qparams, two_to_b, capsys, "2^b − 1 steps")


# ---- STE
def ste_ref(x, s, z, lo, hi):
    return torch.fake_quantize_per_tensor_affine(x, s, z, lo, hi)


def test_fake_quantize_ste(capsys):
    assert run(check.fake_quantize_ste, ste_ref, capsys)[0]

    def no_grad_round(x, s, z, lo, hi):                       # round() cuts the gradient
        return ((torch.clamp(torch.round(x / s) + z, lo, hi) - z) * s).detach()
    expect_fail(check.fake_quantize_ste, no_grad_round, capsys)

    def ste_everywhere(x, s, z, lo, hi):                      # forgets that clamping stops the gradient
        xq = (torch.clamp(torch.round(x / s) + z, lo, hi) - z) * s
        return x + (xq - x).detach()
    expect_fail(check.fake_quantize_ste, ste_everywhere, capsys)

    def no_zero_point(x, s, z, lo, hi):
        xq = torch.clamp(torch.round(x / s), lo, hi) * s
        return x + (xq - x).detach()
    expect_fail(check.fake_quantize_ste, no_zero_point, capsys)


# ---- kd_loss
def test_kd_loss(capsys):
    assert run(check.kd_loss, distill.kd_loss, capsys)[0]

    def no_t2(s, t, y, T, a):
        lp_s, p_t = F.log_softmax(s / T, -1), F.softmax(t / T, -1)
        return (1 - a) * F.cross_entropy(s, y) + a * F.kl_div(lp_s, p_t, reduction="batchmean")
    expect_fail(check.kd_loss, no_t2, capsys, "T²")

    def reversed_kl(s, t, y, T, a):
        lp_t, p_s = F.log_softmax(t / T, -1), F.softmax(s / T, -1)
        return (1 - a) * F.cross_entropy(s, y) + a * T * T * F.kl_div(lp_t, p_s, reduction="batchmean")
    expect_fail(check.kd_loss, reversed_kl, capsys, "teacher's softened distribution comes first")

    def seed_003(s, t, y, T, a):                              # erratum 6: plain supervised training
        return F.cross_entropy(s, y)
    expect_fail(check.kd_loss, seed_003, capsys)


# ---- svd_linear
def test_svd_linear(capsys):
    assert run(check.svd_linear, lowrank.svd_linear, capsys)[0]

    def no_singular_values(layer, r):
        U, S, Vh = torch.linalg.svd(layer.weight.detach(), full_matrices=False)
        a, b = nn.Linear(layer.in_features, r, bias=False), nn.Linear(r, layer.out_features)
        with torch.no_grad():
            a.weight.copy_(Vh[:r]); b.weight.copy_(U[:, :r]); b.bias.copy_(layer.bias)
        return nn.Sequential(a, b)
    expect_fail(check.svd_linear, no_singular_values, capsys)
    expect_fail(check.svd_linear, lambda layer, r: lowrank.svd_linear(layer, min(r + 1, layer.out_features)), capsys)

    def no_bias(layer, r):
        m = lowrank.svd_linear(layer, r)
        with torch.no_grad():
            m[1].bias.zero_()
        return m
    expect_fail(check.svd_linear, no_bias, capsys)


# ---- Huffman
def test_huffman_lengths(capsys):
    assert run(check.huffman_lengths, coding.huffman_lengths, capsys)[0]

    def fixed_length(symbols):
        n = len(set(symbols))
        return {s: max(1, math.ceil(math.log2(n))) for s in set(symbols)}
    expect_fail(check.huffman_lengths, fixed_length, capsys)

    def shannon(symbols):
        f = coding.counts(symbols)
        total = sum(f.values())
        return {s: max(1, math.ceil(-math.log2(c / total))) for s, c in f.items()}
    expect_fail(check.huffman_lengths, shannon, capsys)

    def off_by_one(symbols):
        return {s: l - 1 for s, l in coding.huffman_lengths(symbols).items()}
    expect_fail(check.huffman_lengths, off_by_one, capsys)


def test_a_non_function_is_a_type_error():
    with pytest.raises(TypeError, match="The 'fn' parameter of check.threshold must be a function"):
        check.threshold(3)


@pytest.mark.parametrize("name", ["threshold", "global_magnitude_mask", "keep_filters", "affine_qparams",
                                  "fake_quantize_ste", "kd_loss", "svd_linear", "huffman_lengths"])
def test_a_check_leaves_the_global_rng_alone(name, capsys):
    """Issue 15: check.svd_linear called torch.manual_seed(i), reseeding the student's global RNG."""
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    getattr(check, name)(not_yet)                                  # builds every case, then stops
    assert torch.equal(torch.get_rng_state(), state)


def test_svd_linear_check_leaves_the_global_rng_alone(capsys):
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    assert run(check.svd_linear, lowrank.svd_linear, capsys)[0]    # the reference passes every case
    assert torch.equal(torch.rand(3), expected)


def test_use_runs_the_students_function_once_it_passed_else_the_reference(capsys):
    from labkit import prune

    def mine(w, tau):
        return w.masked_fill(w.abs() < tau, 0)

    assert check.use(mine, prune.threshold, True) is mine
    assert "your mine" in capsys.readouterr().out
    assert check.use(mine, prune.threshold, False) is prune.threshold
    assert "labkit's labkit.prune.threshold until your mine passes" in capsys.readouterr().out
    with pytest.raises(TypeError, match="'passed' parameter of check.use"):
        check.use(mine, prune.threshold, None)
    with pytest.raises(TypeError, match="'fn' parameter of check.use"):
        check.use(3, prune.threshold, True)


def test_metrics_from_confusion_check_accepts_the_reference_and_catches_micro_averaging(capsys):
    from labkit import train
    import numpy as np
    assert check.metrics_from_confusion(train.metrics_from_confusion)

    def micro(C):
        C = np.asarray(C, dtype=float)
        a = float(np.trace(C) / C.sum())
        return {"accuracy": a, "precision": a, "recall": a, "f1": a}

    assert not check.metrics_from_confusion(micro)
    assert "fails on the smallest failing input" in capsys.readouterr().out


# ---- fixed-point multiplier (08)
def test_fixed_point_multiplier(capsys):
    from labkit.deploy import fixedpoint

    assert run(check.fixed_point_multiplier, fixedpoint.fixed_point_multiplier, capsys)[0]
    expect_fail(check.fixed_point_multiplier, lambda M: math.frexp(M), capsys, "not the real M₀")
    expect_fail(check.fixed_point_multiplier, lambda M: (round(math.frexp(M)[0] * 2**31), math.frexp(M)[1]),
                capsys, "right shift")

    def unguarded(M):                                   # forgets that round(M₀ · 2³¹) can reach 2³¹
        m0, e = math.frexp(M)
        return math.floor(m0 * 2**31 + 0.5), -e

    expect_fail(check.fixed_point_multiplier, unguarded, capsys, "no int32 holds")
    expect_fail(check.fixed_point_multiplier, lambda M: (round(M * 2**31), 0), capsys, "normalize first")
    ok, out = run(check.fixed_point_multiplier, not_yet, capsys)
    assert not ok and "not implemented yet" in out


# ---- 10: group-wise RTN and GPTQ's column update
def test_groupwise(capsys):
    assert run(check.groupwise, lambda w, b, g: quantize.groupwise(w, b, g, "restricted"), capsys)[0]
    expect_fail(check.groupwise, lambda w, b, g: quantize.groupwise(w, b, None, "restricted"), capsys,
                hint="one scale per row")
    expect_fail(check.groupwise, lambda w, b, g: quantize.groupwise(w, b, g, "symmetric"), capsys,
                hint="torch's grid")
    assert not check.groupwise(not_yet)


def test_gptq_column(capsys):
    assert run(check.gptq_column, check.gptq_update, capsys)[0]
    expect_fail(check.gptq_column, lambda W, Hi, j, q: check.gptq_update(W, Hi, j, 2 * W[:, j] - q), capsys,
                hint="the sign")

    def in_place(W, Hi, j, q):
        W[:, j] = q
        return W
    expect_fail(check.gptq_column, in_place, capsys, hint="")


def test_gptq_update_by_hand():
    W = torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64)
    Hinv = torch.tensor([[2.0, 1.0, 0.5], [1.0, 2.0, 0.0], [0.5, 0.0, 1.0]], dtype=torch.float64)
    out = check.gptq_update(W, Hinv, 0, torch.tensor([0.0], dtype=torch.float64))
    # δ = (1 − 0) / 2 = 0.5; columns 1, 2 move by −0.5 · [1.0, 0.5]
    assert out.tolist() == [[0.0, 1.5, 2.75]] and W.tolist() == [[1.0, 2.0, 3.0]]


@pytest.mark.parametrize("name", ["groupwise", "gptq_column"])
def test_10_checks_leave_the_global_rng_alone(name, capsys):
    torch.manual_seed(1234)
    state = torch.get_rng_state()
    getattr(check, name)(not_yet)
    assert torch.equal(torch.get_rng_state(), state)


# ---- 11: SmoothQuant's scale and folding
def test_smoothquant_fold(capsys):
    from labkit import smoothquant

    assert run(check.smoothquant_fold, check.smooth_fold, capsys)[0]

    def times_s(g, b, W, a, al):
        s = smoothquant.scales(a, W.abs().amax(0), al)
        return g * s, b * s, W / s

    def swapped(g, b, W, a, al):
        s = smoothquant.scales(a, W.abs().amax(0), 1 - al)
        return g / s, b / s, W * s

    expect_fail(check.smoothquant_fold, times_s, capsys, hint="γ / s")
    expect_fail(check.smoothquant_fold, swapped, capsys, hint="α is the activations' exponent")
    assert not check.smoothquant_fold(not_yet)


def test_smooth_fold_by_hand_keeps_the_product():
    g, b = torch.ones(2), torch.tensor([1.0, -2.0])
    W = torch.tensor([[1.0, 4.0]])
    g2, b2, W2 = check.smooth_fold(g, b, W, torch.tensor([4.0, 1.0]), 0.5)
    # s = √4/√1 = 2, √1/√4 = 0.5
    assert g2.tolist() == [0.5, 2.0] and b2.tolist() == [0.5, -4.0] and W2.tolist() == [[2.0, 2.0]]
    x = torch.tensor([[3.0, 5.0]])
    torch.testing.assert_close((x * g2 + b2) @ W2.T, (x * g + b) @ W.T)


# ---- budget (notebook 09's challenge)
def _budget_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def _budget_data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(40, 6, generator=g), torch.randint(0, 3, (40,), generator=g)


def test_budget_counts_the_bytes_itself_and_measures_the_accuracy(capsys):
    from labkit import count, ptq, train
    X, y = _budget_data()
    m = _budget_model()
    acc = round(train.accuracy(m, X, y) * 40) / 40                # k of n, as the check computes it
    fp32 = 4 * (30 + 5 + 15 + 3)                                   # weights and biases by hand
    ok, out = run(lambda f: check.budget(f, X, y, fp32, acc), lambda: (m, {}), capsys)
    assert ok and out.startswith("✓") and f"{fp32} bytes ≤ {fp32}" in out, out
    ok, out = run(lambda f: check.budget(f, X, y, fp32 - 1, 0.0), lambda: (m, {}), capsys)
    assert not ok and f"{fp32} bytes > {fp32 - 1}" in out, out
    ok, out = run(lambda f: check.budget(f, X, y, fp32, min(1.0, acc + 0.01)), lambda: (m, {}), capsys)
    assert not ok and "accuracy" in out and "<" in out, out
    q = ptq.quantize_weights(m, 4)                                 # on the 4-bit grid: counted as 4-bit
    ok, out = run(lambda f: check.budget(f, X, y, 10**6, 0.0), lambda: (q, {"bits": 4}), capsys)
    assert ok and f"{count.model_bytes(q, bits=4)} bytes" in out, out


def test_budget_refuses_storage_the_weights_do_not_fit(capsys):
    from labkit import ptq
    X, y = _budget_data()
    m = _budget_model()
    out = expect_fail(lambda f: check.budget(f, X, y, 10**6, 0.0), lambda: (m, {"bits": 2}), capsys)
    assert "not on one 2-bit uniform grid" in out                   # float weights claimed as 2-bit
    km = ptq.quantize_weights(m, 3, method="kmeans")
    out = expect_fail(lambda f: check.budget(f, X, y, 10**6, 0.0), lambda: (km, {"bits": 2, "codebook": True}), capsys)
    assert "more than a 2-bit codebook's 4" in out
    assert run(lambda f: check.budget(f, X, y, 10**6, 0.0), lambda: (km, {"bits": 3, "codebook": True}), capsys)[0]
    expect_fail(lambda f: check.budget(f, X, y, 10**6, 0.0), lambda: (m, {"colour": 1}), capsys)
    expect_fail(lambda f: check.budget(f, X, y, 10**6, 0.0), lambda: m, capsys)                  # no storage
    expect_fail(lambda f: check.budget(f, X, y, 10**6, 0.0), lambda: (m, {"huffman": True}), capsys)


def test_budget_huffman_equals_deep_compressions_size_table(capsys):
    from labkit import deep_compression as dc, prune
    X, y = _budget_data()
    m = prune.remove_(prune.magnitude_(_budget_model(), 0.5))
    shared = dc.share_pruned_(m, 2, seed=0)
    expected = math.ceil(float(dc.size_table(m, shared, index_bits=3)["bits P+Q+H"].iloc[-1]) / 8)
    ok, out = run(lambda f: check.budget(f, X, y, expected, 0.0), lambda: (m, {"huffman": True, "index_bits": 3}), capsys)
    assert ok and f"{expected:,} bytes ≤ {expected:,}" in out, out


def test_budget_not_implemented_and_bad_arguments(capsys):
    X, y = _budget_data()
    ok, out = run(lambda f: check.budget(f, X, y, 100, 0.5), not_yet, capsys)
    assert not ok and "not implemented yet" in out
    with pytest.raises(TypeError, match="The 'fn' parameter of check.budget must be a function"):
        check.budget(3, X, y, 100, 0.5)
    with pytest.raises(ValueError, match="The 'min_accuracy' parameter of check.budget"):
        check.budget(not_yet, X, y, 100, 1.5)
    with pytest.raises(ValueError, match="The 'max_bytes' parameter of check.budget"):
        check.budget(not_yet, X, y, 0, 0.5)


# ---- 12: N:M mask
def test_nm_mask(capsys):
    from labkit import llm_prune

    def by_topk(s, n, m):                           # a different tie-break from labkit's is fine
        g = s.reshape(*s.shape[:-1], -1, m)
        return torch.zeros_like(g, dtype=torch.bool).scatter_(-1, g.topk(n, -1).indices, True).reshape(s.shape)

    assert run(check.nm_mask, llm_prune.nm_mask, capsys)[0]
    assert run(check.nm_mask, by_topk, capsys)[0]
    expect_fail(check.nm_mask, lambda s, n, m: llm_prune.nm_mask(-s, n, m), capsys, hint="keeps the smallest")
    expect_fail(check.nm_mask, lambda s, n, m: llm_prune.unstructured_mask(s, 1 - n / m, "row"), capsys,
                hint="largest of each row")
    assert not check.nm_mask(not_yet)
