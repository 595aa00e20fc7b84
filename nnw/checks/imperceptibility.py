"""Imperceptibility (NNW-TEC §7.2.5, §7.3.4, §7.4.4; Tables 2, 3, 12, 17; MPAI-NNW V1 procedure 1).

The population: the marked versions of model seed s are paired with the unmarked model of seed s
(same seed, same training trunk). Each row gives Impact = |P_uwm − P_wm| / P_uwm × 100 (eq. 1) for
its pair, on Table 1's measure (a classifier's *classification error*; Top-1 recorded beside it). The verdict compares populations (:func:`nnw.checks.decision.non_inferiority`): the mean
relative loss of the task measure, with its standard error (between model seeds, and at least
the test-set noise of each estimate), is tested against the profile's margin: non-inferior
(pass), inferior (fail) or inconclusive. Every marked model must also be detected right after
insertion (read blind): a mark that is not there is not imperceptible, it is absent.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from nnw.checks.decision import FAIL, Pair, binomial_se, non_inferiority
from nnw.checks.campaign import fail_on_misbehaviour
from nnw.checks.population import campaign
from nnw.checks.result import ClauseResult
from nnw.metrics import LOWER_IS_BETTER, impact
from nnw.profile import for_measure
from nnw.spec.technologies import imperceptibility_clause

_ORDER = {"fail": 0, "inconclusive": 1, "not assessed": 2, "pass": 3}


def _se(task, key: str, value: float) -> float | None:
    """Standard error of a task measure from the test-set size (top-1: binomial); None where the
    measure's sampling distribution is not modelled (then the between-seed spread alone is used)."""
    test = getattr(task, "test", None)
    if key in ("top1", "error") and test is not None:
        return binomial_se(value, int(test.y.shape[0]))
    return None


@fail_on_misbehaviour
def check_imperceptibility(zoo, method, task_name: str, config: Mapping[str, Any], *,
                           key_seeds: Sequence[int] | None = None, table: str | None = None) -> ClauseResult:
    task = zoo.task(task_name)
    keys = task.performance_keys
    pol = zoo.profile.decisions
    wanted = set(zoo.profile.key_seeds_of(task_name) if key_seeds is None else key_seeds)
    camp = (campaign(zoo, method, task_name, config, None) if key_seeds is None else
            campaign(zoo, method, task_name, config, None, key_seeds=list(key_seeds), null=False))
    rows: list[dict[str, Any]] = []
    pairs: dict[str, list[Pair]] = {k: [] for k in keys}
    for r in camp["marked"]:
        if r["key_seed"] not in wanted:
            continue
        s = r["model_seed"]
        p_uwm = zoo.unmarked(task_name, s)[1]["performance"]
        p_wm = r["perf"]
        row: dict[str, Any] = {"model_seed": s, "key_seed": r["key_seed"], "detected": r["detected"],
                               "score": r["score"], "p_value": r["p_value"]}
        row.update({f"{k}_uwm": v for k, v in p_uwm.items() if k not in keys})   # e.g. Top-1 beside the error
        row.update({f"{k}_wm": v for k, v in p_wm.items() if k not in keys})
        for k in keys:
            row.update({f"{k}_uwm": p_uwm[k], f"{k}_wm": p_wm[k], f"impact_{k}": impact(p_uwm[k], p_wm[k])})
            pairs[k].append(Pair(s, p_uwm[k], p_wm[k], _se(task, k, p_uwm[k]), _se(task, k, p_wm[k])))
        rows.append(row)
    margins = {k: for_measure(pol["noninferiority_margin"], k) for k in keys}
    decisions = {k: non_inferiority(pairs[k], margin=margins[k], confidence=float(pol["confidence"]), what=k,
                                    lower_is_better=k in LOWER_IS_BETTER) for k in keys}
    worst = min(decisions.values(), key=lambda d: _ORDER[d.verdict])
    verdict, message = worst.verdict, "; ".join(f"{k}: {d.message}" for k, d in decisions.items())
    undetected = [r for r in rows if not r["detected"]]
    if undetected:
        verdict = FAIL
        message = (f"{len(undetected)} of {len(rows)} marked models not detected right after insertion "
                   f"(e.g. seed {undetected[0]['model_seed']} key {undetected[0]['key_seed']}, score "
                   f"{undetected[0]['score']:.3g}); " + message)
    impacts = {k: [r[f"impact_{k}"] for r in rows] for k in keys}
    measured = {"impact_percent": {k: max(v) for k, v in impacts.items()},
                "impact_mean_percent": {k: sum(v) / len(v) for k, v in impacts.items()},
                "impact_spread_over_keys": {k: max(v) - min(v) for k, v in impacts.items()},
                "mean_relative_loss": {k: d.statistic.get("mean_relative_loss") for k, d in decisions.items()},
                "loss_bounds": {k: [d.statistic.get("lower"), d.statistic.get("upper")] for k, d in decisions.items()},
                "M": len(zoo.profile.model_seeds_of(task_name)), "D": len(wanted), "detected": sum(r["detected"] for r in rows)}
    title = f"Imperceptibility of {method.name} on {task_name} {_cfg(config)}"
    pct = sorted({100 * m for m in margins.values()})
    threshold = {"noninferiority_margin_percent": pct[0] if len(pct) == 1 else {k: 100 * m for k, m in margins.items()},
                 "confidence": float(pol["confidence"])}
    return ClauseResult(imperceptibility_clause(method.name), title, verdict, message, measured,
                        threshold, rows, table, decision={k: d.as_dict() for k, d in decisions.items()})


def _cfg(config: Mapping[str, Any]) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in config.items()) + ")"
