"""labkit.selection: the exact k-th smallest over several tensors, and the masks built on it."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from labkit import selection


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 3000), st.floats(0.0, 1.0), st.integers(1, 64), st.integers(0, 5))
def test_kth_smallest_is_exact(n, q, sample, seed):
    x = torch.randn(n, generator=torch.Generator().manual_seed(seed)).abs()
    x[: n // 3] = x[0]                                           # a block of ties
    k = max(1, round(q * n))
    t, below = selection.kth_smallest([x[: n // 2], x[n // 2:]], k, seed=seed, sample=sample)
    assert t == torch.sort(x).values[k - 1].item()
    assert below == int((x < t).sum()) and below < k <= below + int((x == t).sum())


def test_smallest_masks_by_hand_with_ties_in_order():
    a, b = torch.tensor([3.0, -1.0, 2.0]), torch.tensor([[2.0, 5.0], [-2.0, 0.5]])
    # |values|: 3 1 2 | 2 5 2 0.5 → k = round(0.5 · 7) = 4 smallest: 0.5, 1, and two of the three 2s,
    # taken in tensor order then flat order: a[2], b[0, 0]; b[1, 0] is kept
    ka, kb = selection.smallest_masks([a, b], 0.5, absolute=True)
    assert ka.tolist() == [True, False, False] and kb.tolist() == [[False, True], [True, False]]
    # signed: −2 < −1 < 0.5 < 2 ...: k = 4 prunes −2, −1, 0.5 and the first 2 (a[2])
    ka, kb = selection.smallest_masks([a, b], 0.5)
    assert ka.tolist() == [True, False, False] and kb.tolist() == [[True, True], [False, False]]


def test_n_to_prune_rounds_half_to_even():
    assert [selection.n_to_prune(0.5, n) for n in (1, 3, 5)] == [0, 2, 2]


def test_bad_input():
    with pytest.raises(ValueError, match="The 'amount' parameter of smallest_masks must be"):
        selection.smallest_masks([torch.ones(3)], 1.0)
    with pytest.raises(TypeError, match="The 'scores' parameter of smallest_masks must be"):
        selection.smallest_masks(torch.ones(3), 0.5)
    with pytest.raises(ValueError, match="The 'k' parameter of kth_smallest must be"):
        selection.kth_smallest([torch.ones(3)], 4)
    with pytest.raises(ValueError, match="The 'n' parameter of n_to_prune must be an int in the range"):
        selection.n_to_prune(0.5, -1)
    with pytest.raises(ValueError, match="The 'amount' parameter of n_to_prune must be a float"):
        selection.n_to_prune(1.5, 10)
    with pytest.raises(ValueError, match="The 'scores' parameter of kth_smallest must be tensors holding"):
        selection.kth_smallest([torch.empty(0)], 1)
    with pytest.raises(ValueError, match="The 'targets' parameter of zero_smallest_ must be one tensor per"):
        selection.zero_smallest_([torch.ones(2)], [torch.ones(3)], 0.5)


@pytest.mark.parametrize("nan_at", [0, 1, 2])
def test_nan_scores_are_refused_not_looped_on(nan_at):
    """A NaN compares false with every bracket: the pass used to widen forever."""
    x = torch.tensor([3.0, 1.0, 2.0])
    x[nan_at] = float("nan")
    with pytest.raises(ValueError, match=r"must be tensors of comparable values \(no NaN\)\. Got '1 NaN of 3"):
        selection.kth_smallest([x], 3)
    with pytest.raises(ValueError, match="no NaN"):
        selection.zero_smallest_([x.clone()], [x], 0.9)


def test_zero_smallest_equals_the_masks_in_place_also_for_non_contiguous():
    g = torch.Generator().manual_seed(0)
    scores = [torch.randn(50, 40, generator=g), torch.randn(30, 20, generator=g).t()]   # the 2nd: a view
    scores[0][:5] = 0.25                                                             # ties
    targets = [s.clone() + 10 for s in scores]
    keep = selection.smallest_masks(scores, 0.3, absolute=True)
    selection.zero_smallest_(targets, scores, 0.3, absolute=True)
    for t, s, k in zip(targets, scores, keep):
        assert torch.equal(t, torch.where(k, s + 10, torch.zeros_like(s)))
