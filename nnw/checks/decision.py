"""The decision rules: every verdict is a statistic on the standard's population, with its power.

MPAI-NNW's NNW-NNT procedure tests M unmarked models, each with D marked versions. The rules
below turn what was measured on that population into one of four outcomes:

- ``pass``: the data show the property (with the stated power against the stated alternative);
- ``fail``: the data show the property is violated;
- ``inconclusive``: neither; the message says what sample would decide;
- ``not assessed``: nothing could be measured (e.g. every Modified model was useless).

Only ``pass`` counts as a pass. Each function is pure (counts and numbers in, a :class:`Decision`
out) so that its power can be shown on simulated inputs of known truth (``tests/test_decision.py``).
Parameters (levels, margins, power targets) are data from the profile's ``decisions`` block.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from scipy import special

from nnw.metrics.rates import binomial_sf, clopper_pearson

PASS, FAIL, INCONCLUSIVE, NOT_ASSESSED = "pass", "fail", "inconclusive", "not assessed"


@dataclass(frozen=True)
class Decision:
    verdict: str
    rule: str                                   # the rule in words, with its parameters
    message: str
    statistic: dict[str, Any] = field(default_factory=dict)
    power: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        # NNW-TEC states each technology's detection rule, not how a population of detections is
        # judged: every rule here is the suite's policy, and the certificate says so
        return {**asdict(self), "policy": "suite policy (profile 'decisions'), not stated by NNW-TEC"}


# -- rates: false alarms, missed detections ------------------------------------------------------
def critical_count(n: int, nominal: float, alpha: float) -> int:
    """The smallest k with P(X ≥ k | n, nominal) ≤ alpha: the test rejects 'rate ≤ nominal' at k."""
    if nominal <= 0.0:
        return 1  # any event contradicts a zero rate
    lo, hi = 0, n + 1  # binomial_sf is decreasing in k; binary search
    while lo < hi:
        mid = (lo + hi) // 2
        if binomial_sf(mid, n, nominal) <= alpha:
            hi = mid
        else:
            lo = mid + 1
    return lo


def rate_power(n: int, nominal: float, alpha: float, rate: float) -> float:
    """P(the excess-rate test fails | the true rate is ``rate``) at sample size n."""
    return binomial_sf(critical_count(n, nominal, alpha), n, rate)


def sample_for_power(nominal: float, alpha: float, rate: float, power: float, n_max: int = 1_000_000) -> int:
    """The smallest n at which the excess-rate test reaches ``power`` against ``rate`` (power is not
    monotone in n for a discrete test; this is the first n that reaches it)."""
    n = 1
    while n <= n_max:
        if rate_power(n, nominal, alpha, rate) >= power:
            return n
        n = n + 1 if n < 64 else int(n * 1.02) + 1
    return n_max


def excess_rate(k: int, n: int, *, nominal: float, alpha: float, power_at: float, target_power: float,
                what: str, confidence: float = 0.95) -> Decision:
    """One-sided exact binomial test of H0 'rate ≤ nominal' on k events out of n.

    fail: P(X ≥ k | n, nominal) ≤ alpha. pass: not failed, and the test had power ≥ target_power
    against a rate of ``power_at`` at this n. inconclusive: not failed, power too low (the message
    gives the n needed). not assessed: n == 0.
    """
    low, high = clopper_pearson(k, n, confidence)
    rule = (f"fail when the {what} rate is significantly above {nominal:g} (exact binomial, one-sided, level "
            f"{alpha:.3g}); pass only with power ≥ {target_power:g} against a rate of {power_at:g}")
    if n == 0:
        return Decision(NOT_ASSESSED, rule, f"no case to count {what}s on", {"k": 0, "n": 0})
    p_value = binomial_sf(k, n, nominal)
    crit = critical_count(n, nominal, alpha)
    power = binomial_sf(crit, n, power_at)
    stat = {"k": k, "n": n, "rate": k / n, "ci": [low, high], "confidence": confidence, "p_value": p_value,
            "nominal": nominal, "alpha": alpha, "critical_count": crit}
    pw = {"against_rate": power_at, "power": power, "target": target_power}
    text = f"{k}/{n} {what}s (rate {k / n:.3f}, {int(round(confidence * 100))}% CI [{low:.3f}, {high:.3f}])"
    if p_value <= alpha:
        return Decision(FAIL, rule, f"{text}: significantly above the nominal {nominal:g} "
                        f"(p = {p_value:.2g} ≤ {alpha:.3g})", stat, pw)
    if power < target_power:
        need = sample_for_power(nominal, alpha, power_at, target_power)
        return Decision(INCONCLUSIVE, rule, f"{text}: not significantly above {nominal:g}, but {n} cases give power "
                        f"{power:.2f} < {target_power:g} against {power_at:g}; about {need} would decide", stat, pw)
    return Decision(PASS, rule, f"{text}: consistent with the nominal {nominal:g} (power {power:.2f} against "
                    f"{power_at:g})", stat, pw)


def missed_detections(k: int, useful: int, population: int, *, nominal: float, alpha: float, power_at: float,
                      target_power: float, what: str, confidence: float = 0.95) -> Decision:
    """Robustness of a population at one value of a Modification grid: :func:`excess_rate` on the k
    misses among the ``useful`` Modified models (NNW-TEC §8: the mark must be found while the model
    is still useful), out of ``population`` (M × D).

    Where that test cannot decide (inconclusive: too few useful models for the stated power) *and*
    fewer than half of the population stayed useful, the value lies beyond the useful range of most
    of the population: *not assessed*, as when none stayed useful. It never passes; the grade then
    requires the clause's family to be decided at another value of its grid. A miss among the
    useful models still fails.
    """
    d = excess_rate(k, useful, nominal=nominal, alpha=alpha, power_at=power_at, target_power=target_power,
                    what=what, confidence=confidence)
    stat = {**d.statistic, "useful": useful, "population": population}
    if d.verdict == INCONCLUSIVE and 2 * useful < population:
        return Decision(NOT_ASSESSED, d.rule + "; not assessed where fewer than half of the Modified models stay "
                        "useful and the useful ones cannot decide", f"only {useful} of the {population} Modified "
                        f"models stayed useful: this value lies beyond the useful range of most of the population "
                        f"({d.message})", {**stat, "beyond_useful_range": True}, d.power)
    return Decision(d.verdict, d.rule, d.message, stat, d.power)


# -- imperceptibility: non-inferiority of the marked population ------------------------------------
def _t_quantile(q: float, df: int) -> float:
    return float(special.stdtrit(df, q))


@dataclass(frozen=True)
class Pair:
    """One (unmarked model seed s, marked version of s) pair and the standard errors of its estimates."""
    cluster: int            # the model seed: pairs of one seed share their unmarked model
    p_uwm: float
    p_wm: float
    se_uwm: float | None = None
    se_wm: float | None = None


def non_inferiority(pairs: Sequence[Pair], *, margin: float, confidence: float, what: str,
                    lower_is_better: bool = False) -> Decision:
    """Two one-sided tests on the relative loss L = (P_uwm − P_wm) / P_uwm (higher P is better;
    (P_wm − P_uwm) / P_uwm for a lower-is-better measure such as the classification error).

    L is averaged over the D marked versions of each model seed (one cluster per seed), then over
    the M seeds; its standard error is the larger of the between-seed one (t with M − 1 degrees of
    freedom) and the one the test-set noise alone implies (normal). With U and L the one-sided
    ``confidence`` bounds of the mean loss: pass when U < margin (non-inferior), fail when
    L > margin (inferior), else inconclusive.
    """
    loss_formula = "(P_wm − P_uwm)/P_uwm" if lower_is_better else "(P_uwm − P_wm)/P_uwm"
    rule = (f"non-inferiority of the marked models on {what}: mean relative loss {loss_formula} over the "
            f"M model seeds, one-sided {confidence:g} bounds against the margin {margin:g}")
    pairs = [p for p in pairs if p.p_uwm is not None and p.p_wm is not None]
    if not pairs:
        return Decision(NOT_ASSESSED, rule, "no marked/unmarked pair")
    clusters: dict[int, list[Pair]] = {}
    for p in pairs:
        clusters.setdefault(p.cluster, []).append(p)
    means, noise_var = [], []
    for ps in clusters.values():
        base = ps[0].p_uwm
        if base <= 0 or not math.isfinite(base):
            return Decision(NOT_ASSESSED, rule, f"unmarked performance {base!r} gives no relative loss")
        sign = -1.0 if lower_is_better else 1.0
        losses = [sign * (p.p_uwm - p.p_wm) / p.p_uwm for p in ps]
        means.append(sum(losses) / len(losses))
        if all(p.se_uwm is not None and p.se_wm is not None for p in ps):
            # the unmarked estimate is shared within a cluster; the marked ones are independent
            var = (ps[0].se_uwm / base) ** 2 + sum((p.se_wm / base) ** 2 for p in ps) / len(ps) ** 2
            noise_var.append(var)
    m = len(means)
    mean = sum(means) / m
    se_noise = math.sqrt(sum(noise_var)) / m if len(noise_var) == m else None
    se_between = (math.sqrt(sum((x - mean) ** 2 for x in means) / (m - 1) / m)) if m > 1 else None
    z = float(special.ndtri(confidence))
    candidates = []
    if se_between is not None:
        candidates.append((se_between * _t_quantile(confidence, m - 1), "between model seeds (t)"))
    if se_noise is not None:
        candidates.append((se_noise * z, "test-set noise"))
    stat: dict[str, Any] = {"mean_relative_loss": mean, "M": m, "pairs": len(pairs), "margin": margin,
                            "confidence": confidence, "se_between_seeds": se_between, "se_test_set": se_noise,
                            "cluster_losses": means}
    if not candidates:
        return Decision(INCONCLUSIVE, rule, f"one model seed and no standard error: mean relative loss {mean:.4f} "
                        "cannot be bounded; at least 2 model seeds would decide", stat)
    half, source = max(candidates)
    lower, upper = mean - half, mean + half
    stat.update(lower=lower, upper=upper, bound_from=source)
    # power: chance to show non-inferiority when the true loss is 0, with this half-width
    power = float(special.ndtr((margin - 0.0) / (half / z) - z)) if half > 0 else 1.0
    pw = {"against_loss": 0.0, "power": power}
    text = (f"mean relative loss {100 * mean:.2f}% over {m} model seeds ({len(pairs)} pairs), one-sided "
            f"{confidence:g} bounds [{100 * lower:.2f}%, {100 * upper:.2f}%] ({source})")
    if upper < margin:
        return Decision(PASS, rule, f"{text} < margin {100 * margin:g}%: non-inferior", stat, pw)
    if lower > margin:
        return Decision(FAIL, rule, f"{text} > margin {100 * margin:g}%: inferior", stat, pw)
    # how many seeds would make the half-width small enough to separate mean from the margin
    gap = abs(margin - mean)
    need = "more model seeds" if gap == 0 else \
        f"about {max(m + 1, math.ceil(m * (half / gap) ** 2))} model seeds (M) at this spread"
    return Decision(INCONCLUSIVE, rule, f"{text} straddles the margin {100 * margin:g}%: {need} would decide",
                    stat, pw)


def binomial_se(p: float, n: int) -> float:
    """Standard error of an accuracy p measured on n test images."""
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n > 0 else math.inf
