"""Negative controls (IEEE 3304: record the false alarm rate; NNW-NNT: M unmarked models).

**False alarms.** A calibrated null: each of the M never-marked models (after the same
Modification when one is given) is read blind with ``null_keys`` Keys of other Actors
(:mod:`nnw.checks.population`), pooled over the M models. A detector at significance α raises
false alarms at rate α; the clause fails when the rate is significantly above the nominal rate
(exact binomial, one-sided), at the level ``family_alpha`` divided by the number of false-alarm
clauses the profile defines for the method (Bonferroni), so a calibrated method passes all of them
with probability ≥ 1 − family_alpha. A pass needs power ≥ ``power_target`` against
``false_alarm_power_at`` (twice the nominal rate by default).

**Cross-Actor interference** (a separate clause): each marked model read with the Keys of the
other Actors (the null Keys) must not report their marks, same rule.
"""
from __future__ import annotations

from typing import Any, Mapping

from nnw.checks.decision import excess_rate
from nnw.checks.campaign import fail_on_misbehaviour
from nnw.checks.population import campaign
from nnw.checks.result import ClauseResult


def _decide(zoo, rows, clauses_in_family: int, what: str):
    pol = zoo.profile.decisions
    return excess_rate(sum(r["detected"] for r in rows), len(rows), nominal=float(pol["nominal_false_alarm_rate"]),
                       alpha=float(pol["family_alpha"]) / max(1, clauses_in_family),
                       power_at=float(pol["false_alarm_power_at"]), target_power=float(pol["power_target"]),
                       what=what, confidence=float(pol["confidence"]))


def _measured(decision, rows, zoo) -> dict[str, Any]:
    st = decision.statistic
    return {"false_alarms": st.get("k", 0), "negatives": st.get("n", 0), "false_alarm_rate": st.get("rate"),
            "false_alarm_ci": st.get("ci", [0.0, 1.0]), "p_value": st.get("p_value"),
            "power": decision.power.get("power"), "max_score": max((r["score"] for r in rows), default=None),
            "M": len({r["model_seed"] for r in rows})}


@fail_on_misbehaviour
def check_false_alarms(zoo, method, task_name: str, config: Mapping[str, Any], modification=None, *,
                       clauses_in_family: int = 1) -> ClauseResult:
    rows = campaign(zoo, method, task_name, config, modification)["null"]
    decision = _decide(zoo, rows, clauses_in_family, "false alarm")
    measured = _measured(decision, rows, zoo)
    measured["null_keys_per_model"] = int(zoo.profile.decisions["null_keys"])
    what = "unmodified" if modification is None else f"after {modification.name}"
    title = f"False alarms of {method.name} on never-marked {task_name} models ({what})"
    threshold = {"nominal_false_alarm_rate": decision.statistic.get("nominal"), "level": decision.statistic.get("alpha"),
                 "confidence": decision.statistic.get("confidence"),
                 "clauses_in_family": clauses_in_family}
    return ClauseResult("IEEE 3304 false alarm rate", title, decision.verdict, decision.message, measured, threshold,
                        rows, decision=decision.as_dict())


@fail_on_misbehaviour
def check_cross_actor(zoo, method, task_name: str, config: Mapping[str, Any], *,
                      clauses_in_family: int = 1) -> ClauseResult:
    rows = campaign(zoo, method, task_name, config, None)["cross"]
    decision = _decide(zoo, rows, clauses_in_family, "cross-Actor detection")
    title = f"Cross-Actor interference of {method.name} on marked {task_name} models"
    threshold = {"nominal_false_alarm_rate": decision.statistic.get("nominal"), "level": decision.statistic.get("alpha"),
                 "confidence": decision.statistic.get("confidence"),
                 "clauses_in_family": clauses_in_family}
    return ClauseResult("NNW-NNT cross-Actor interference", title, decision.verdict, decision.message,
                        _measured(decision, rows, zoo), threshold, rows, decision=decision.as_dict())
