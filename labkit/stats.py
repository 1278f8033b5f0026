"""How sure is a measured fraction? The uncertainty every comparison in the workbook states.

Measured on n images, a fraction p̂ = k/n (accuracy, agreement) is uncertain by about
±z·√(p̂(1−p̂)/n): 972 of 1,000 test images is 0.972, but the same model could score 0.961 or 0.981
on another 1,000 images alike. The Wilson score interval (Wilson 1927; Brown, Cai & DasGupta 2001,
https://doi.org/10.1214/ss/1009213286) keeps its 95 % coverage at small n and near p = 1, where
p̂ ± z·√(p̂(1−p̂)/n) does not:

    (p̂ + z²/2n ± z·√(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n)       z = 1.96 for 95 %

Two accuracies whose difference is inside these intervals are "within noise" on that test set.
"""
from __future__ import annotations

import torch

from .validate import accepts, check_float, check_int


@accepts(large="10**9 successes out of 10**9 items is a valid measurement; its interval is "
                     "about [1 − 3.8e-9, 1], computed in closed form")
def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """(low, high): the Wilson score interval for a fraction k/n measured on n items, such as
    top-1 accuracy or agreement, at `confidence` (the module docstring has the formula)."""
    n = check_int(n, "n", "wilson_interval", low=1)
    k = check_int(k, "k", "wilson_interval", low=0, high=n)
    confidence = check_float(confidence, "confidence", "wilson_interval", low=0, high=1, closed="neither")
    z = float(torch.special.ndtri(torch.tensor(0.5 + confidence / 2, dtype=torch.float64)))
    p = k / n
    centre, half = p + z * z / (2 * n), z * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def accuracy_interval(accuracy: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """wilson_interval of an accuracy measured on n items (k = round(accuracy · n))."""
    accuracy = check_float(accuracy, "accuracy", "accuracy_interval", low=0, high=1)
    n = check_int(n, "n", "accuracy_interval", low=1)
    return wilson_interval(round(accuracy * n), n, confidence)
