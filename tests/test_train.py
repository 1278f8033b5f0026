import numpy as np
import pytest
import torch
from sklearn import metrics as skm
from torch import nn

from labkit import data, models, train


@pytest.fixture(scope="module")
def digits():
    return data.load_digits(seed=0)


def small_mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def test_metrics_by_hand():
    # true 0 0 1 1 2, predicted 0 1 1 1 0
    C = train.confusion_matrix(torch.tensor([0, 0, 1, 1, 2]), torch.tensor([0, 1, 1, 1, 0]), 3)
    assert C.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    m = train.metrics_from_confusion(C)
    assert m["accuracy"] == pytest.approx(3 / 5)
    # precision: 1/2, 2/3, 0 (never predicted); recall: 1/2, 1, 0
    assert m["precision"] == pytest.approx((1 / 2 + 2 / 3 + 0) / 3)
    assert m["recall"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert m["f1"] == pytest.approx((1 / 2 + 0.8 + 0) / 3)


def test_fit_learns_and_evaluate_matches_sklearn(digits):
    model = small_mlp()
    hist = train.fit(model, digits.X_train, digits.y_train, epochs=40, max_shift=0, progress=False,
                     X_val=digits.X_val, y_val=digits.y_val)
    assert len(hist["loss"]) == 40 and hist["loss"][-1] < hist["loss"][0]
    r = train.evaluate(model, digits.X_test, digits.y_test)
    assert r["accuracy"] > 0.9
    pred = train.predict(model, digits.X_test).argmax(1).numpy()
    y = digits.y_test.numpy()
    assert r["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert r["precision"] == pytest.approx(skm.precision_score(y, pred, average="macro", zero_division=0))
    assert r["recall"] == pytest.approx(skm.recall_score(y, pred, average="macro", zero_division=0))
    assert r["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    assert np.array_equal(r["confusion"], skm.confusion_matrix(y, pred, labels=range(10)))


def test_fit_is_repeatable_with_a_seed(digits):
    a, b = small_mlp(), small_mlp()
    for m in (a, b):
        train.fit(m, digits.X_train, digits.y_train, epochs=2, seed=5, max_shift=1, progress=False)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_fit_has_no_masks_argument_prune_keeps_its_masks_in_the_model(digits):
    """fit(masks=) was keyed by parameter names ("1.weight"), prune's masks by layer names ("1"):
    one mechanism is left, prune's."""
    from labkit import prune

    model = small_mlp()
    mask = torch.rand(32, 64, generator=torch.Generator().manual_seed(0)) > 0.7
    with pytest.raises(TypeError, match="masks"):
        train.fit(model, digits.X_train, digits.y_train, epochs=1, masks={"1.weight": mask})
    prune.apply_masks_(model, {"1": mask})
    train.fit(model, digits.X_train, digits.y_train, epochs=3, progress=False, max_shift=0)
    assert torch.equal(model[1].weight[~mask], torch.zeros(int((~mask).sum())))
    assert (model[1].weight[mask] != 0).all()


def test_evaluate_restores_training_mode(digits):
    model = small_mlp().train()
    train.evaluate(model, digits.X_test, digits.y_test)
    assert model.training


def test_device_auto_is_cuda_only_when_available():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert train.resolve_device("auto").type == expected
    assert train.resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            train.resolve_device("cuda")
    with pytest.raises(ValueError, match="'device' parameter"):
        train.resolve_device("tpu")


def test_bad_input(digits):
    m = small_mlp()
    with pytest.raises(ValueError, match="'epochs' parameter of fit must be an int in the range \\[0, inf\\]"):
        train.fit(m, digits.X_train, digits.y_train, epochs=-1)
    with pytest.raises(ValueError, match="'lr' parameter of fit"):
        train.fit(m, digits.X_train, digits.y_train, lr=0)
    with pytest.raises(TypeError, match="'y' parameter of fit must be an int64"):
        train.fit(m, digits.X_train, digits.y_train.float())
    with pytest.raises(ValueError, match="'y' parameter of fit"):
        train.fit(m, digits.X_train, digits.y_train[:5])
    with pytest.raises(ValueError, match="'max_shift' parameter of fit"):
        train.fit(m, digits.X_train.flatten(1), digits.y_train, max_shift=2)
    with pytest.raises(TypeError, match="'model' parameter of evaluate"):
        train.evaluate("model", digits.X_test, digits.y_test)
    with pytest.raises(TypeError, match="'model' parameter of evaluating"):
        train.evaluating("model")                          # at the call, not at `with`
    with pytest.raises(ValueError, match=r"'y_pred' parameter of confusion_matrix must be labels in \[0, 2\]"):
        train.confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 3]), 3)
    with pytest.raises(TypeError, match="'y_true' parameter of confusion_matrix must be a 1-D integer"):
        train.confusion_matrix(torch.tensor([0.0, 1.0]), torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match="'C' parameter of metrics_from_confusion must be a square"):
        train.metrics_from_confusion(np.zeros(3))
    with pytest.raises(ValueError, match="'C' parameter of metrics_from_confusion must be counts"):
        train.metrics_from_confusion(np.zeros((2, 2)))     # no samples: accuracy would be 0/0


# ---------------------------------------------------------------- one eval-mode context for every module
def _mixed():
    """A model in training mode with a frozen (eval-mode) batch-norm inside it."""
    m = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5), nn.Linear(4, 3)).train()
    m[1].eval()
    return m


def _modes(m):
    return [x.training for x in m.modules()]


def test_evaluating_restores_every_submodule_even_when_the_block_raises():
    m = _mixed()
    before = _modes(m)
    with train.evaluating(m) as inside:
        assert inside is m and not any(_modes(m))
    assert _modes(m) == before
    with pytest.raises(RuntimeError, match="boom"):
        with train.evaluating(m):
            raise RuntimeError("boom")
    assert _modes(m) == before
    with pytest.raises(TypeError, match="'model' parameter of evaluating"):
        with train.evaluating("m"):
            pass


def test_every_eval_mode_user_restores_the_modes_it_found():
    from labkit import count, criteria, distill

    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    calls = {
        "train.predict": lambda m: train.predict(m, x, device="cpu"),
        "count.layers": lambda m: count.layers(m, (4,)),
        "count.benchmark": lambda m: count.benchmark(m, x, runs=1, warmup=0),
        "criteria.scores": lambda m: criteria.scores(m, x, y, criterion="gradient"),
        "distill.distill (teacher)": lambda m: distill.distill(
            nn.Sequential(nn.Linear(4, 3)), m, x, y, epochs=1, max_shift=0, progress=False, device="cpu"),
    }
    for name, call in calls.items():
        m = _mixed()
        before = _modes(m)
        call(m)
        assert _modes(m) == before, name            # the frozen batch-norm stays frozen


def test_criteria_scores_restores_training_mode_when_the_loss_raises():
    from labkit import criteria

    m = _mixed()

    def bad_loss(logits, target):
        raise RuntimeError("bad loss")

    with pytest.raises(RuntimeError, match="bad loss"):
        criteria.scores(m, torch.randn(8, 4), torch.randint(0, 3, (8,)), criterion="taylor", loss_fn=bad_loss)
    assert m.training and m[0].training


def test_fit_shows_a_progress_bar_only_where_someone_watches(digits, monkeypatch, capsys):
    """Headless (a report, nbval, tools/nb.py) the bar is off: a stored notebook would keep its
    first frame, "epochs: 0%| | 0/2", beside the finished result. Interactive, tqdm draws it."""
    for headless, drawn in (("0", True), ("1", False)):
        monkeypatch.setenv("LABKIT_HEADLESS", headless)
        train.fit(small_mlp(), digits.X_train, digits.y_train, epochs=2, max_shift=0, progress=True)
        assert ("epochs:" in capsys.readouterr().err) is drawn, f"LABKIT_HEADLESS={headless}"
