"""labkit.distill: kd_loss against the explicit formula and torch's KLDivLoss; the training loop."""
import math

import pytest
import torch
from hypothesis import given, settings, strategies as st
from torch import nn
from torch.nn import functional as F

from labkit import distill


def explicit(zs, zt, y, T, alpha):
    """The formula written out sample by sample, in float64."""
    N, K = len(zs), len(zs[0])
    total = 0.0
    for i in range(N):
        ps = [math.exp(zs[i][k] / T) for k in range(K)]
        pt = [math.exp(zt[i][k] / T) for k in range(K)]
        ps = [p / sum(ps) for p in ps]
        pt = [p / sum(pt) for p in pt]
        ce = -math.log(math.exp(zs[i][y[i]]) / sum(math.exp(zs[i][k]) for k in range(K)))
        kl = sum(pt[k] * (math.log(pt[k]) - math.log(ps[k])) for k in range(K))
        total += (1 - alpha) * ce + alpha * T * T * kl
    return total / N


def test_hand_computed_two_classes():
    zs, zt, y = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]]), torch.tensor([0])
    # T = 1: CE = log 2; p_t = (3/4, 1/4), p_s = (1/2, 1/2): KL = 3/4·log(3/2) + 1/4·log(1/2)
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert distill.kd_loss(zs, zt, y, T=1.0, alpha=0.5).item() == pytest.approx(
        0.5 * math.log(2) + 0.5 * kl, rel=1e-6)
    assert distill.kd_loss(zs, zt, y, T=1.0, alpha=0.0).item() == pytest.approx(math.log(2))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(2, 5), st.floats(0.5, 10), st.floats(0, 1),
       st.integers(0, 10_000))
def test_equals_explicit_formula_and_kldivloss(N, K, T, alpha, seed):
    g = torch.Generator().manual_seed(seed)
    zs = torch.randn(N, K, generator=g, dtype=torch.float64) * 3
    zt = torch.randn(N, K, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, K, (N,), generator=g)
    got = distill.kd_loss(zs, zt, y, T, alpha).item()
    assert got == pytest.approx(explicit(zs.tolist(), zt.tolist(), y.tolist(), T, alpha),
                                rel=1e-9, abs=1e-12)
    kl = nn.KLDivLoss(reduction="batchmean")(F.log_softmax(zs / T, 1), F.softmax(zt / T, 1))
    ref = (1 - alpha) * F.cross_entropy(zs, y) + alpha * T * T * kl
    assert got == pytest.approx(ref.item(), rel=1e-9, abs=1e-12)


def test_gradient_reaches_student_only_and_vanishes_at_the_teacher():
    zt = torch.tensor([[2.0, -1.0, 0.5]], requires_grad=True)
    zs = zt.detach().clone().requires_grad_(True)
    distill.kd_loss(zs, zt, torch.tensor([0]), T=3.0, alpha=1.0).backward()
    assert zt.grad is None
    torch.testing.assert_close(zs.grad, torch.zeros_like(zs))   # KL minimum: student = teacher


def test_soft_targets_flatten_with_temperature():
    z = torch.tensor([[4.0, 1.0, 0.0]])
    p1, p5 = distill.soft_targets(z, 1.0), distill.soft_targets(z, 5.0)
    torch.testing.assert_close(p1.sum(), torch.tensor(1.0))
    assert p5.max() < p1.max() and p5.min() > p1.min()


class Spy(nn.Module):
    """A fixed teacher that records the mode and grad state it was called in."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)
        self.calls = []

    def forward(self, x):
        self.calls.append((self.training, torch.is_grad_enabled(), x.clone()))
        return self.lin(x)


def test_distill_runs_teacher_in_eval_no_grad_on_the_same_batch():
    torch.manual_seed(0)
    X, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    teacher, student = Spy(), nn.Linear(4, 3)
    teacher.train()
    w0 = teacher.lin.weight.detach().clone()
    seen = []
    orig = student.forward
    student.forward = lambda x: (seen.append(x.clone()), orig(x))[1]
    hist = distill.distill(student, teacher, X, y, T=2.0, alpha=0.7, epochs=2, batch_size=16,
                           max_shift=0, progress=False, device="cpu")
    assert len(hist["loss"]) == 2 and all(math.isfinite(v) for v in hist["loss"])
    assert len(teacher.calls) == 8
    assert all(not training and not grad for training, grad, _ in teacher.calls)
    assert all(torch.equal(xt, xs) for (_, _, xt), xs in zip(teacher.calls, seen))
    assert teacher.training and torch.equal(teacher.lin.weight, w0)      # mode restored, unchanged


def test_distill_alpha_zero_is_plain_training():
    from labkit.train import fit
    torch.manual_seed(0)
    X, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    kw = dict(epochs=2, batch_size=16, max_shift=0, progress=False, device="cpu", seed=3)
    distill.distill(a, nn.Linear(4, 3), X, y, T=4.0, alpha=0.0, **kw)
    fit(b, X, y, **kw)
    torch.testing.assert_close(a.weight, b.weight)


@pytest.mark.parametrize("call, exc", [
    (lambda: distill.kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2).long(), T=0.0),
     ValueError),
    (lambda: distill.kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2).long(),
                             alpha=1.5), ValueError),
    (lambda: distill.kd_loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2).long()),
     ValueError),
    (lambda: distill.kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2)), TypeError),
    (lambda: distill.kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3).long()),
     ValueError),
    (lambda: distill.kd_loss([[0.0]], torch.zeros(1, 1), torch.zeros(1).long()), TypeError),
    (lambda: distill.soft_targets(torch.zeros(2, 3), T=-1.0), ValueError),
    (lambda: distill.soft_targets(torch.empty(0)), ValueError),                 # no classes
    (lambda: distill.soft_targets(torch.tensor([[0.0, float("nan")]])), ValueError),
    (lambda: distill.distill("s", nn.Linear(2, 2), torch.zeros(2, 2), torch.zeros(2).long()),
     TypeError),
    (lambda: distill.distill(nn.Linear(2, 2), nn.Linear(2, 2), torch.zeros(2, 2),
                             torch.zeros(2).long(), T="4"), TypeError),
])
def test_bad_input(call, exc):
    with pytest.raises(exc, match="parameter of"):
        call()


def test_distill_trains_with_a_given_loss_function():
    """loss= is the function the training runs (notebook 05's my_kd_loss): labkit's kd_loss passed
    explicitly gives the same student, a function that ignores the teacher gives another."""
    import torch
    from torch import nn
    from labkit import distill
    X, y = torch.randn(64, 1, 4, 4, generator=torch.Generator().manual_seed(0)), torch.arange(64) % 3
    teacher = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))

    def make():
        torch.manual_seed(1)
        return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))

    calls = []

    def counted(*args):
        calls.append(1)
        return distill.kd_loss(*args)

    a, b = make(), make()
    distill.distill(a, teacher, X, y, epochs=2, max_shift=0, progress=False, device="cpu")
    distill.distill(b, teacher, X, y, epochs=2, max_shift=0, progress=False, device="cpu", loss=counted)
    assert calls and torch.equal(a[1].weight, b[1].weight)
    with pytest.raises(TypeError, match="'loss' parameter of distill"):
        distill.distill(make(), teacher, X, y, epochs=1, loss="kl")
