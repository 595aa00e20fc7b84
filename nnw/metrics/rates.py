"""Detector error rates with exact confidence intervals (IEEE 3304-2023: record the false alarm rate
and the missed detection rate; NNW-NNT robustness procedure: ratios of false positives and negatives)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special  # scipy.stats' kernels without its ~1 s import (CLI start-up)

__all__ = ["Rate", "binomial_sf", "clopper_pearson", "false_alarm_rate", "missed_detection_rate"]


def _check_counts(k: int, n: int) -> tuple[int, int]:
    for name, v in (("k", k), ("n", n)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name} must be a non-negative int; received {v!r}")
    if k > n:
        raise ValueError(f"k must not exceed n; received k={k}, n={n}")
    return int(k), int(n)


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) two-sided interval for a binomial proportion k/n.

    low = Beta(a/2; k, n-k+1) quantile (0 if k == 0), high = Beta(1-a/2; k+1, n-k) quantile
    (1 if k == n), a = 1 - confidence. n == 0 gives the uninformative (0, 1).
    """
    k, n = _check_counts(k, n)
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1); received {confidence!r}")
    if n == 0:
        return (0.0, 1.0)
    a = 1.0 - confidence
    low = 0.0 if k == 0 else float(special.betaincinv(k, n - k + 1, a / 2))  # beta.ppf
    high = 1.0 if k == n else float(special.betaincinv(k + 1, n - k, 1 - a / 2))  # beta.ppf
    return (low, high)


@dataclass(frozen=True)
class Rate:
    """A proportion k/n with its Clopper–Pearson interval [low, high]; value is nan when n == 0."""

    value: float
    low: float
    high: float
    k: int
    n: int


def _rate(k: int, n: int, confidence: float) -> Rate:
    low, high = clopper_pearson(k, n, confidence)
    k, n = int(k), int(n)
    return Rate(value=k / n if n else math.nan, low=low, high=high, k=k, n=n)


def false_alarm_rate(false_positives: int, negatives: int, confidence: float = 0.95) -> Rate:
    """False alarm rate = false positives / unmarked (negative) cases tested, with exact interval.

    No negatives tested (n == 0) -> value nan, interval (0, 1).
    """
    return _rate(false_positives, negatives, confidence)


def missed_detection_rate(false_negatives: int, positives: int, confidence: float = 0.95) -> Rate:
    """Missed detection rate = false negatives / marked (positive) cases tested, with exact interval.

    No positives tested (n == 0) -> value nan, interval (0, 1).
    """
    return _rate(false_negatives, positives, confidence)


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): the chance of ``k`` or more agreements by luck
    (``scipy.stats.binom.sf(k - 1, n, p)``)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return float(special.bdtrc(k - 1, n, p))
