"""Robustness (NNW-TEC §7.2.6, §7.3.5, §7.4.5; Tables 4–11, 13–16, 18–21; NNW-NNT procedure).

On the whole population (M model seeds × D marked versions, :mod:`nnw.checks.population`) each
marked model is Modified, evaluated and read blind with its Key. §8: "the mark can be extracted
before the performance of the Modified models drops", so each marked model is

- *detected* or *missed* when the Modified model is still useful: its task measure did not drop by
  more than the profile's tolerance relative to the marked model (eq. 2; a model that *improved*
  is useful);
- *not assessable* when it dropped by more.

Decision (:func:`nnw.checks.decision.excess_rate`): fail when the missed-detection rate among the
assessable models is significantly above the profile's ``max_miss_rate``; pass only with the
stated power against ``miss_rate_power_at``; *not assessed* when no model is assessable, or when
fewer than half are and they cannot decide (:func:`nnw.checks.decision.missed_detections`).
"""
from __future__ import annotations

from typing import Any, Mapping

from nnw.checks.common import fmt, marked_identity
from nnw.checks.decision import missed_detections
from nnw.checks.overwriting import actor_recovery
from nnw.checks.campaign import fail_on_misbehaviour, population_key_seed
from nnw.checks.population import campaign
from nnw.checks.result import ClauseResult
from nnw.metrics import LOWER_IS_BETTER, relative_loss
from nnw.profile import for_measure
from nnw.spec.technologies import detection_criterion, robustness_clause


def degradation(perf: Mapping[str, float], ref: Mapping[str, float], keys, tolerance=None) -> tuple[float, bool]:
    """The worst relative *drop* of the task measures (eq. 2 signed in the direction of worse, on
    Table 1's measures: a classifier's error rising is a drop; negative when the Modified model
    improved) and whether every measure stayed within its tolerance (the model is still useful):
    a classifier while its error rose by at most the tolerance in absolute terms (5 points: the
    Watermark-Robustness-Toolbox's rule, an attack counts only if it costs less than 5 points of
    accuracy), the other measures while their eq. 2 drop is at most the tolerance."""
    drops = {k: relative_loss(k, perf[k], ref[k]) for k in keys}
    useful = tolerance is None or all(
        (perf[k] - ref[k] if k in LOWER_IS_BETTER else d) <= for_measure(tolerance, k) for k, d in drops.items())
    return max(drops.values()), useful


def tolerance_record(tolerance, keys) -> tuple[dict[str, float], str]:
    """How a clause states its usefulness rule: the certificate's field (points for the
    classification error, an absolute rise; percent, eq. 2, for the other measures) and its text."""
    k = keys[0]
    value = 100 * for_measure(tolerance, k)
    if k in LOWER_IS_BETTER:
        return {"useful_error_rise_points": value}, f"{value:g} points of error"
    return {"useful_error_tolerance_percent": value}, f"{value:g}%"


@fail_on_misbehaviour
def check_robustness(zoo, method, task_name: str, config: Mapping[str, Any], modification, *,
                     tolerance, clauses_in_family: int = 1, table: str | None = None) -> ClauseResult:
    task = zoo.task(task_name)
    pol = zoo.profile.decisions
    camp = campaign(zoo, method, task_name, config, modification)
    rows = []
    for r in camp["marked"]:
        drop, useful = degradation(r["perf"], r["perf_ref"], task.performance_keys, tolerance)
        row = {k: v for k, v in r.items() if k not in ("perf", "perf_ref")}
        row.update(r["perf"])
        row.update(error_percent=100 * drop, useful=useful)
        row["outcome"] = ("not assessable" if not row["useful"] else "detected" if row["detected"] else "missed")
        if modification.family == "overwriting":  # §7.2.6: which Actors are recovered after each later mark
            seed = population_key_seed(r["model_seed"], r["key_seed"])
            m = zoo.marked(task_name, method, config, r["model_seed"], seed)
            stages = zoo.overwritten(task_name, m.model, modification, seed=seed, method=method, key=m.key,
                                     identity=marked_identity(task_name, method, config, r["model_seed"], seed))
            row["actors"] = actor_recovery(method, task, [(m.model, m.key)] + stages)
        rows.append(row)
    useful = [r for r in rows if r["useful"]]
    misses = [r for r in useful if not r["detected"]]
    decision = missed_detections(len(misses), len(useful), len(rows), nominal=float(pol["max_miss_rate"]),
                           alpha=float(pol["family_alpha"]) / max(1, clauses_in_family),
                           power_at=float(pol["miss_rate_power_at"]), target_power=float(pol["power_target"]),
                           what="missed detection", confidence=float(pol["confidence"]))
    measured = {"error_percent": [r["error_percent"] for r in rows], "detected": [r["detected"] for r in rows],
                "score": [r["score"] for r in rows], "population": len(rows), "useful_rows": len(useful),
                "not_assessable": len(rows) - len(useful), "missed": len(misses),
                "missed_detection_rate": decision.statistic.get("rate"),
                "missed_detection_ci": decision.statistic.get("ci", [0.0, 1.0]),
                "M": len(zoo.profile.model_seeds_of(task_name)), "D": len(zoo.profile.key_seeds_of(task_name))}
    if any("actors" in r for r in rows):
        measured["actors_recovered_at_end"] = [len(r["actors"][-1]["recovered"]) for r in rows if "actors" in r]
    if len(rows) > 1:
        measured["score_spread_over_keys"] = max(measured["score"]) - min(measured["score"])
    if method.tags.decodes:
        measured["ber"] = [r.get("ber") for r in rows]
        measured["ser"] = [r.get("ser") for r in rows]
    title = f"Robustness of {method.name} against {modification.name} on {task_name}"
    tol_rec, tol_text = tolerance_record(tolerance, task.performance_keys)
    threshold = {**tol_rec, "detection": detection_criterion(method.name),
                 "max_miss_rate": pol["max_miss_rate"]}
    detail = "; ".join(f"seed {r['model_seed']} key {r['key_seed']}: missed (relative error {r['error_percent']:.2f}%, still useful: "
                       f"within {tol_text}; score {fmt(r['score'])}, threshold {fmt(r['threshold'])}, "
                       f"p {fmt(r['p_value'])})" for r in misses[:5])
    message = decision.message + (f" — {detail}" if detail else "")
    if not useful:
        message = (f"every one of the {len(rows)} Modified marked models lost more than {tol_text}: "
                   "nothing to assess")
    return ClauseResult(robustness_clause(method.name), title, decision.verdict, message, measured,
                        threshold, rows, table, decision=decision.as_dict())

