"""labkit.stats: the Wilson score interval, by hand and against scipy."""
import pytest

from labkit import stats


def test_wilson_interval_by_hand_and_against_scipy():
    """23 of 28 at 95 %: p̂ = 0.8214, z = 1.95996; centre (p̂ + z²/56) / (1 + z²/28) = 0.78265,
    half-width z·√(p̂(1−p̂)/28 + z²/3136) / (1 + z²/28) = 0.13857 → (0.6441, 0.9212)."""
    low, high = stats.wilson_interval(23, 28)
    assert (low, high) == pytest.approx((0.64409, 0.92121), abs=1e-5)
    assert stats.wilson_interval(0, 10)[0] == 0.0 and stats.wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert stats.wilson_interval(10, 10)[0] < 1.0                    # 10 of 10 does not prove 100 %
    scipy_stats = pytest.importorskip("scipy.stats")
    for k, n, c in [(23, 28, 0.95), (11, 12, 0.95), (0, 5, 0.9), (480, 500, 0.99), (1, 1, 0.5)]:
        ref = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=c, method="wilson")
        assert stats.wilson_interval(k, n, c) == pytest.approx((ref.low, ref.high), abs=1e-12)
    with pytest.raises(ValueError, match=r"The 'k' parameter of wilson_interval must be an int in the range \[0, 28\]"):
        stats.wilson_interval(29, 28)
    with pytest.raises(ValueError, match="'n' parameter of wilson_interval"):
        stats.wilson_interval(0, 0)
    with pytest.raises(ValueError, match=r"'confidence' parameter of wilson_interval must be a float in the range \(0, 1\)"):
        stats.wilson_interval(1, 2, 1.0)
    with pytest.raises(TypeError, match="'k' parameter of wilson_interval"):
        stats.wilson_interval(2.0, 3)


def test_accuracy_interval_is_the_wilson_interval_of_the_rounded_count():
    assert stats.accuracy_interval(0.972, 1000) == stats.wilson_interval(972, 1000)
    low, high = stats.accuracy_interval(0.972, 1000)
    assert (low, high) == pytest.approx((0.95983, 0.98056), abs=1e-5)        # about ±1 point
    with pytest.raises(ValueError, match=r"The 'accuracy' parameter of accuracy_interval must be a float in the range \[0, 1\]"):
        stats.accuracy_interval(1.5, 10)
