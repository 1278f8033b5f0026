"""labkit.prune, labkit.criteria, labkit.schedules: hand values, torch agreement, properties, bad input."""
import copy

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn
from torch.nn.utils import prune as tp

from labkit import criteria, models, prune, schedules, sparsity

W = torch.tensor([[1., 2, 0, 3], [4, 0, 5, 6], [7, 8, 0, 9]])


def torch_masks(model, amount, scope):
    model = prune.clone(model)
    layers = [(m, "weight") for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    if scope == "layer":
        for m, _ in layers:
            tp.l1_unstructured(m, "weight", amount)
    else:
        tp.global_unstructured(layers, tp.L1Unstructured, amount=amount)
    return prune.masks(model)


def test_threshold_worked_example_erratum_1():
    out = prune.threshold(W, 2.0)
    assert torch.equal(out, torch.tensor([[0., 2, 0, 3], [4, 0, 5, 6], [7, 8, 0, 9]]))
    assert sparsity.density(out) == pytest.approx(8 / 12)
    assert torch.equal(W[0], torch.tensor([1., 2, 0, 3]))          # input unchanged


@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("amount", [0.0, 0.1, 0.37, 0.5, 0.9, 0.999])
def test_magnitude_equals_torch(scope, amount):
    for make in (models.lenet300_100, models.lenet5):
        model = make(seed=3)
        ref = torch_masks(model, amount, scope)
        got = prune.masks(prune.magnitude(prune.clone(model), amount, scope=scope))
        assert ref.keys() == got.keys()
        for k in ref:
            assert torch.equal(ref[k], got[k]), (k, amount, scope)


@pytest.mark.parametrize("amount,n,k", [(0.5, 5, 2), (0.25, 10, 2), (0.25, 6, 2), (0.3, 10, 3), (0.7, 3, 2)])
def test_amount_rounding_is_pythons_round(amount, n, k):
    lin = nn.Linear(n, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.arange(1., n + 1).reshape(1, n))
    ref = torch_masks(lin, amount, "layer")[""]
    prune.magnitude_(lin, amount)
    assert int((~prune.masks(lin)[""]).sum()) == k == round(amount * n)
    assert torch.equal(prune.masks(lin)[""], ref)


def test_ties_not_straddling_the_threshold_equal_torch():
    lin = nn.Linear(6, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3., -1, 2, 1, -3, 2]]))
    got = prune.masks(prune.magnitude(prune.clone(lin), 1 / 3))[""]
    assert torch.equal(got, torch.tensor([[True, False, True, False, True, True]]))
    assert torch.equal(got, torch_masks(lin, 1 / 3, "layer")[""])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-4, 4), min_size=1, max_size=60), st.floats(0, 0.999), st.booleans())
def test_ties_count_and_set_agree_with_torch(values, amount, as_global):
    """Integer weights: many ties. Same count as torch; same decision for every |w| ≠ threshold."""
    w = torch.tensor(values, dtype=torch.float32)
    half = len(values) // 2
    model = nn.Sequential(nn.Linear(max(half, 1), 1, bias=False), nn.Linear(len(values) - half, 1, bias=False)) \
        if half else nn.Sequential(nn.Linear(len(values), 1, bias=False))
    with torch.no_grad():
        for m, part in zip(model, torch.split(w, [half, len(values) - half]) if half else [w]):
            m.weight.copy_(part.reshape(1, -1))
    scope = "global" if as_global else "layer"
    ref = torch_masks(model, amount, scope)
    got = prune.masks(prune.magnitude(prune.clone(model), amount, scope=scope))
    r = torch.cat([v.reshape(-1) for v in ref.values()])
    g = torch.cat([v.reshape(-1) for v in got.values()])
    assert int(r.sum()) == int(g.sum())
    a = torch.cat([m.weight.detach().abs().reshape(-1) for m in model])
    if scope == "global" and (~g).any():
        t = a[~g].max()                                    # the threshold value
        assert torch.equal(r[a != t], g[a != t])
        assert bool((a[~g] <= t).all()) and bool((a[g] >= t).all())


def test_permanent_zeroes_in_place_without_masks():
    a, b = models.lenet300_100(seed=1), models.lenet300_100(seed=1)
    prune.magnitude_(a, 0.8, scope="global")
    w_before = b[1].weight
    prune.magnitude_(b, 0.8, scope="global", permanent=True)
    assert prune.masks(b) == {} and not hasattr(b[1], "weight_orig")
    assert b[1].weight is w_before                                 # same Parameter, zeroed in place
    for name in ("1", "3", "5"):
        assert torch.equal(dict(a.named_modules())[name].weight, dict(b.named_modules())[name].weight)


@pytest.mark.parametrize("path", ["magnitude_", "prune_by_scores_"])
@pytest.mark.parametrize("scope", ["layer", "global"])
def test_permanent_on_a_masked_model_folds_the_masks_first(path, scope):
    """Issue 15: permanent=True on a masked model wrote its zeros into the derived `weight`, which
    the next forward pass recomputed as weight_orig · mask (sparsity 0.8, then 0.5 again)."""
    model = prune.magnitude_(models.lenet300_100(seed=0), 0.5)
    ref = prune.remove_(prune.magnitude_(prune.clone(model), 0.8, scope=scope))
    held = model[1].weight_orig                                    # what an optimizer holds
    if path == "magnitude_":
        prune.magnitude_(model, 0.8, scope=scope, permanent=True)
    else:
        scores = {n: m.weight.detach().abs() for n, m in model.named_modules() if hasattr(m, "weight_mask")}
        prune.prune_by_scores_(model, scores, 0.8, scope=scope, permanent=True)
    assert prune.masks(model) == {} and model[1].weight is held
    assert sparsity.sparsity(model) == pytest.approx(0.8, abs=1e-4)
    model(torch.zeros(1, 784))                                     # a forward pass changes nothing
    assert sparsity.sparsity(model) == pytest.approx(0.8, abs=1e-4)
    for name in ("1", "3", "5"):
        assert torch.equal(dict(model.named_modules())[name].weight, dict(ref.named_modules())[name].weight)


def test_second_call_counts_the_pruned_weights():
    model = models.lenet300_100(seed=0)
    prune.magnitude_(model, 0.3)
    prune.magnitude_(model, 0.6)
    assert sparsity.sparsity(model) == pytest.approx(0.6, abs=1e-3)
    assert hasattr(model[1], "weight_mask") and not isinstance(model[1]._forward_pre_hooks.get(0), list)


def test_per_layer_amounts():
    model = prune.magnitude_(models.lenet300_100(seed=0), {"1": 0.9, "3": 0.5})
    rep = sparsity.report(model).set_index("layer")["sparsity"]
    assert rep["1"] == pytest.approx(0.9) and rep["3"] == pytest.approx(0.5) and rep["5"] == 0


def test_masks_stay_zero_and_remove_keeps_zeros():
    model = prune.magnitude_(models.lenet300_100(seed=0), 0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(8, 784)).sum().backward()
    opt.step()
    model(torch.zeros(1, 784))                                     # recomputes w = w_orig · mask
    assert model[1].weight_orig.ne(0).all() and sparsity.sparsity(model[1].weight) == pytest.approx(0.5)
    prune.remove_(model)
    assert prune.masks(model) == {} and sparsity.sparsity(model[1].weight) == pytest.approx(0.5)


def test_save_and_load_keep_zeros(tmp_path):
    model = prune.magnitude_(models.lenet5(seed=0), 0.9, scope="global")
    path = prune.save(model, tmp_path / "m.safetensors")
    assert prune.masks(model)                                      # save did not change the model
    fresh = prune.load_(models.lenet5(seed=5), path)
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(fresh(x), model(x))
    assert sparsity.sparsity(fresh) == pytest.approx(sparsity.sparsity(model))
    assert sparsity.sparsity(fresh) == pytest.approx(0.9, abs=1e-4)
    model(x)                                                       # after a forward pass, too
    assert torch.equal(prune.clone(model)(x), model(x))


def test_clone_folds_the_masks_in_the_copy_and_leaves_the_model_alone():
    """Issue 15: copy.deepcopy of a masked model raises torch's "graph leaves" RuntimeError after a
    forward pass. clone copies it with every mask folded; the original keeps masks and Parameters."""
    model = prune.magnitude_(models.lenet300_100(seed=0), 0.5)
    x = torch.randn(3, 784, generator=torch.Generator().manual_seed(0))
    model(x)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    held, weight = [id(p) for p in model.parameters()], model[1].weight
    copy_ = prune.clone(model)
    assert model[1].weight is weight and weight.grad_fn is not None   # the model's tensors untouched
    assert prune.masks(copy_) == {} and not hasattr(copy_[1], "weight_orig")
    assert not copy_[1]._forward_pre_hooks and isinstance(copy_[1].weight, nn.Parameter)
    assert torch.equal(copy_(x), model(x)) and sparsity.sparsity(copy_) == pytest.approx(0.5)
    assert [id(p) for p in model.parameters()] == held and prune.masks(model).keys() == {"1", "3", "5"}
    assert copy_[1].weight.data_ptr() != model[1].weight_orig.data_ptr()
    model(x).sum().backward()
    opt.step()                                                     # the optimizer still trains the model
    assert not torch.equal(copy_(x), model(x))
    odd = nn.Linear(2, 2)
    odd.doubled = odd.weight * 2                                   # a computed tensor that is no mask
    with pytest.raises(ValueError, match="The 'model' parameter of clone must be"):
        prune.clone(odd)


def _masked_lenet():
    model = prune.magnitude_(models.lenet300_100(seed=0), 0.5)
    model(torch.zeros(1, 784))                                     # weight is now a non-leaf tensor
    return model


@pytest.mark.parametrize("wrapper", ["lowrank.factorize", "ptq.quantize_model", "ptq.quantize_weights",
                                     "int8.to_int8", "adaround.fold_bn", "structured.prune_filters"])
def test_every_wrapper_that_copies_a_model_takes_a_masked_model(wrapper):
    from labkit import adaround, int8, lowrank, ptq, structured

    x = torch.randn(8, 784, generator=torch.Generator().manual_seed(0))
    run = {"lowrank.factorize": lambda m: lowrank.factorize(m, rank=4),
           "ptq.quantize_model": lambda m: ptq.quantize_model(m, bits=8, a_bits=8, X_calib=x),
           "ptq.quantize_weights": lambda m: ptq.quantize_weights(m, bits=8),
           "int8.to_int8": lambda m: int8.to_int8(m, x),
           "adaround.fold_bn": adaround.fold_bn,
           "structured.prune_filters": lambda m: structured.prune_filters(m, 0.0)}[wrapper]
    model = _masked_lenet()
    out = run(model)
    assert prune.masks(out) == {}                                  # the copy: masks folded
    assert prune.masks(model).keys() == {"1", "3", "5"}            # the model: unchanged
    if wrapper in ("adaround.fold_bn", "structured.prune_filters"):
        assert torch.equal(out(x), model(x))


def test_apply_masks_multiplies():
    model = models.lenet300_100(seed=0)
    m1 = torch.ones(100, 300, dtype=torch.bool)
    m1[0] = False
    m2 = torch.ones(100, 300, dtype=torch.bool)
    m2[1] = False
    prune.apply_masks_(model, {"3": m1})
    prune.apply_masks_(model, {"3": m2})
    assert int((~prune.masks(model)["3"]).sum()) == 600
    assert not model[3].weight[:2].any()


def test_bad_input():
    model = models.lenet300_100()
    with pytest.raises(ValueError, match=r"^The 'amount' parameter of magnitude must be a float in the "
                                         r"range \[0, 1\)\. Got 1\.5 instead\.$"):
        prune.magnitude(model, 1.5)
    with pytest.raises(ValueError, match=r"^The 'amount' parameter of magnitude_ must be a float"):
        prune.magnitude_(model, 1.5)
    with pytest.raises(TypeError, match="'amount' parameter of magnitude"):
        prune.magnitude(model, "0.5")
    with pytest.raises(ValueError, match="'scope' parameter"):
        prune.magnitude(model, 0.5, scope="net")
    with pytest.raises(ValueError, match="at least one Linear or Conv"):
        prune.magnitude(nn.Sequential(nn.ReLU()), 0.5)
    with pytest.raises(TypeError, match="'model' parameter of magnitude"):
        prune.magnitude(W, 0.5)
    with pytest.raises(ValueError, match="'amount' parameter"):
        prune.magnitude(model, {"nope": 0.5})
    with pytest.raises(ValueError, match="'masks' parameter"):
        prune.apply_masks_(model, {"3": torch.ones(2, 2, dtype=torch.bool)})
    with pytest.raises(ValueError, match="'tau' parameter"):
        prune.threshold(W, -1.0)
    with pytest.raises(ValueError, match="'alpha' parameter"):
        criteria.soft_threshold(W, -0.1)
    with pytest.raises(ValueError, match="'criterion' parameter"):
        criteria.scores(model, torch.zeros(2, 784), torch.zeros(2, dtype=torch.long), criterion="hessian")
    with pytest.raises(ValueError, match="'s_f' parameter"):
        schedules.agp_sparsity(1, 1.0)


# ------------------------------------------------------------------ criteria
def test_soft_threshold_hand_values_and_erratum_4():
    w = torch.tensor([-3.0, -0.5, 0.0, 0.5, 3.0])
    assert torch.equal(criteria.soft_threshold(w, 1.0), torch.tensor([-2.0, 0, 0, 0, 2]))
    seed_003 = w - 1.0 * torch.sign(w)                             # the seed's update: signs flip
    assert torch.equal(seed_003, torch.tensor([-2.0, 0.5, 0, -0.5, 2]))


def test_penalties_hand_values():
    model = nn.Sequential(nn.Linear(2, 1, bias=True))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[3.0, -4.0]]))
        model[0].bias.fill_(10.0)                                   # biases are not penalized
    assert criteria.l1_penalty(model).item() == 7.0
    assert criteria.l2_penalty(model).item() == 25.0


def test_gradient_and_taylor_scores_hand_computed():
    lin = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
    model = nn.Sequential(lin)
    X, y = torch.tensor([[1.0, 2.0]]), torch.tensor([0])
    p = torch.softmax(torch.tensor([1.0, -2.0]), 0)
    grad = (p - torch.tensor([1.0, 0.0]))[:, None] * X             # ∂L/∂W = (softmax − onehot) xᵀ
    g = criteria.scores(model, X, y, "gradient")["0"]
    assert torch.allclose(g, grad.abs())
    t = criteria.scores(model, X, y, "taylor")["0"]
    assert torch.allclose(t, (lin.weight.detach() * grad).abs())
    assert torch.equal(criteria.scores(model, X, y, "magnitude")["0"], lin.weight.detach().abs())
    assert lin.weight.grad is None                                  # the model is left as it was


def test_proximal_sgd_makes_exact_zeros_l1_alone_does_not():
    torch.manual_seed(0)
    X = torch.randn(256, 20)
    y = (X[:, 0] > 0).long()                                       # only feature 0 matters
    def run(opt_fn, lam_in_loss):
        model = nn.Sequential(nn.Linear(20, 2))
        opt = opt_fn(model)
        for _ in range(300):
            loss = nn.functional.cross_entropy(model(X), y) + lam_in_loss * criteria.l1_penalty(model)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return model[0].weight.detach()
    w_pen = run(lambda m: torch.optim.SGD(m.parameters(), lr=0.5), 0.02)
    w_prox = run(lambda m: criteria.proximal_sgd(m, lr=0.5, l1=0.02), 0.0)
    assert int((w_pen == 0).sum()) == 0                             # tiny, but not zero
    assert int((w_prox == 0).sum()) >= 30                           # most irrelevant weights exactly 0
    assert (w_prox[:, 0].abs() > 0).all()                           # the useful one survives


# ------------------------------------------------------------------ schedules
def test_agp_hand_values_and_monotone():
    assert schedules.agp_sparsity(0, 0.9, n=4) == 0.0
    assert schedules.agp_sparsity(2, 0.9, n=4) == pytest.approx(0.9 * (1 - 0.5 ** 3))
    assert schedules.agp_sparsity(4, 0.9, n=4) == pytest.approx(0.9)
    assert schedules.agp_sparsity(9, 0.9, n=4) == pytest.approx(0.9)
    assert schedules.agp_sparsity(1, 0.8, s_i=0.2, t0=3, n=2, dt=2) == 0.2
    assert schedules.agp_sparsity(5, 0.8, s_i=0.2, t0=3, n=2, dt=2) == pytest.approx(0.8 - 0.6 * 0.5 ** 3)
    s = [schedules.agp_sparsity(t, 0.95, n=7) for t in range(10)]
    assert all(a <= b for a, b in zip(s, s[1:]))


def _tiny():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 16, generator=g)
    y = (X[:, :4].sum(1) > 0).long()
    make = lambda seed: torch.manual_seed(seed) and nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
    return X, y, make


def test_gradual_prune_reaches_each_layer_target():
    X, y, make = _tiny()
    model = make(0)
    hist = schedules.gradual_prune_(model, X, y, {"0": 0.8, "2": 0.5}, steps=3, epochs_per_step=1,
                                    fine_tune_epochs=1, fit_kwargs={"max_shift": 0}, X_val=X, y_val=y)
    rep = sparsity.report(model).set_index("layer")["sparsity"]
    assert rep["0"] == round(0.8 * 512) / 512 and rep["2"] == 0.5
    assert [h["step"] for h in hist] == [1, 2, 3, 4]
    assert hist[0]["sparsity"] < hist[1]["sparsity"] < hist[2]["sparsity"]


def test_rewind_keeps_masks():
    X, y, make = _tiny()
    model = make(0)
    theta0 = copy.deepcopy(model.state_dict())
    prune.magnitude_(model, 0.5)
    with torch.no_grad():
        model[0].weight_orig.add_(1.0)
    schedules.rewind_(model, theta0)
    assert torch.equal(model[0].weight, theta0["0.weight"] * prune.masks(model)["0"])


def test_lottery_ticket_densities():
    X, y, make = _tiny()
    df = schedules.lottery_ticket(make, X, y, X, y, rounds=2, rate=0.5, epochs=1,
                                  fit_kwargs={"max_shift": 0})
    assert list(df["density"].round(3)) == [1.0, 0.5, 0.25]
    acc = df[["ticket", "reinit"]]
    assert ((acc >= 0) & (acc <= 1)).all().all() and acc.iloc[0, 0] == acc.iloc[0, 1]


def test_sensitivity_and_ratios():
    X, y, make = _tiny()
    model = make(0)
    table = schedules.sensitivity(model, X, y, amounts=(0.0, 0.5))
    assert list(table.index) == ["0", "2"] and (table[0.0] == table["dense"]).all()
    hand = table.copy()
    hand["dense"], hand[0.0], hand[0.5] = [0.9, 0.9], [0.9, 0.9], [0.895, 0.7]
    assert schedules.ratios_from_sensitivity(hand, max_drop=0.01) == {"0": 0.5, "2": 0.0}
    assert prune.masks(model) == {}                                # model untouched


def test_allocate_marginal_greedy_hand_example():
    import pandas as pd
    table = pd.DataFrame({"dense": [0.9, 0.9], 0.5: [0.9, 0.85], 0.9: [0.8, 0.5]}, index=["big", "small"])
    sizes = {"big": 900, "small": 100}
    # step 1: big 0→0.5 costs 0 (tie with nothing cheaper) → 0.45 of all weights
    assert schedules.allocate(table, sizes, 0.4) == {"big": 0.5, "small": 0.0}
    # then: big 0.5→0.9 costs 0.1/(0.4·900) = 2.8e-4, small 0→0.5 costs 0.05/50 = 1e-3 → big first
    assert schedules.allocate(table, sizes, 0.8) == {"big": 0.9, "small": 0.0}
    assert schedules.allocate(table, sizes, 0.85) == {"big": 0.9, "small": 0.5}
    with pytest.raises(ValueError, match="'target' parameter of allocate"):
        schedules.allocate(table, sizes, 0.95)


def test_allocate_dp_is_the_knapsack_optimum_where_greedy_is_not():
    """allocate solves mixed precision's knapsack: dp finds the least summed accuracy cost."""
    import pandas as pd
    # 900 of 2000 weights must go. greedy takes a's cheapest step first (0.001 per 500 weights),
    # then b's 0.5 (0.003): cost 0.004; dp sees that b alone at 0.9 (cost 0.0035) removes enough
    table = pd.DataFrame({"dense": [0.9, 0.9], 0.5: [0.899, 0.897], 0.9: [0.4, 0.8965]}, index=["a", "b"])
    sizes = {"a": 1000, "b": 1000}
    g = schedules.allocate(table, sizes, 0.45)
    d = schedules.allocate(table, sizes, 0.45, method="dp")
    cost = lambda r: sum(0 if r[n] == 0 else table.loc[n, "dense"] - table.loc[n, r[n]] for n in r)
    assert sum(d[n] * sizes[n] for n in d) >= 0.45 * 2000 and sum(g[n] * sizes[n] for n in g) >= 0.45 * 2000
    assert d == {"a": 0.0, "b": 0.9} and cost(d) == pytest.approx(0.0035)
    assert g == {"a": 0.5, "b": 0.5} and cost(g) == pytest.approx(0.004)
    with pytest.raises(ValueError, match="'method' parameter of allocate"):
        schedules.allocate(table, sizes, 0.45, method="exact")


def test_magnitude_returns_a_pruned_copy_and_magnitude_prunes_in_place():
    """The module's rule: a trailing _ changes the model in place; magnitude without it does not."""
    model = models.lenet300_100(seed=0)
    prune.magnitude_(model, 0.25)                                   # a masked model as input
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = prune.magnitude(model, 0.5)
    assert out is not model
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())    # unchanged
    ref = prune.magnitude_(prune.clone(model), 0.5)
    assert prune.masks(out).keys() == prune.masks(ref).keys() == {"1", "3", "5"}
    assert all(torch.equal(prune.masks(out)[n], prune.masks(ref)[n]) for n in ("1", "3", "5"))
    assert prune.magnitude_(model, 0.5) is model and (prune.masks(model)["1"] == prune.masks(ref)["1"]).all()


def test_global_masks_equal_torch_global_unstructured():
    import torch.nn.utils.prune as tp
    model = models.lenet300_100(seed=0)
    layers = [(m, "weight") for m in model.modules() if isinstance(m, nn.Linear)]
    ours = prune.global_masks([m.weight for m, _ in layers], 0.7)
    ref = prune.clone(model)
    tp.global_unstructured([(m, "weight") for m in ref.modules() if isinstance(m, nn.Linear)],
                           pruning_method=tp.L1Unstructured, amount=0.7)
    theirs = [m.weight_mask.bool() for m in ref.modules() if isinstance(m, nn.Linear)]
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    with pytest.raises(TypeError, match="'weights' parameter of global_masks"):
        prune.global_masks(torch.ones(3), 0.5)
