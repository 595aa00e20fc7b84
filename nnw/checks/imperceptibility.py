"""Imperceptibility (NNW-TEC §7.2.5, §7.3.4, §7.4.4; Tables 2, 3, 12, 17; MPAI-NNW V1 procedure 1).

Impact = |P_uwm − P_wm| / P_uwm × 100 (eq. 1) between the unmarked model and its marked version
(same model seed, same training trunk). A difference inside the seed-to-seed spread of the M
unmarked models is training noise, not impact: the clause passes when, for every key, the mark is
detected right after insertion and Impact ≤ the profile's bound *or* |P_uwm − P_wm| ≤ that spread.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from nnw.checks.common import fmt
from nnw.checks.result import FAIL, PASS, ClauseResult
from nnw.metrics import impact


def check_imperceptibility(zoo, method, task_name: str, config: Mapping[str, Any], *, key_seeds: Sequence[int],
                           model_seeds: Sequence[int], bound_percent: float, marked_seed: int = 0,
                           table: str | None = None) -> ClauseResult:
    task = zoo.task(task_name)
    keys = task.performance_keys
    unmarked = {s: zoo.unmarked(task_name, s)[1]["performance"] for s in model_seeds}
    spread = {k: max(p[k] for p in unmarked.values()) - min(p[k] for p in unmarked.values()) for k in keys}
    p_uwm = unmarked[marked_seed] if marked_seed in unmarked else zoo.unmarked(task_name, marked_seed)[1]["performance"]
    rows, failures = [], []
    for d in key_seeds:
        m = zoo.marked(task_name, method, config, marked_seed, d)
        p_wm = m.record["performance"]
        det = m.record["detection"]
        row: dict[str, Any] = {"key_seed": d, "detected": det["present"], "score": det["score"],
                               "p_value": det["p_value"]}
        for k in keys:
            imp = impact(p_uwm[k], p_wm[k])
            within = abs(p_uwm[k] - p_wm[k]) <= spread[k]
            row.update({f"{k}_uwm": p_uwm[k], f"{k}_wm": p_wm[k], f"impact_{k}": imp, f"within_spread_{k}": within})
            if imp > bound_percent and not within:
                failures.append(f"key {d}: Impact on {k} = {imp:.2f}% > bound {bound_percent}% and outside the "
                                f"seed-to-seed spread {spread[k]:.4g} (P_uwm {p_uwm[k]:.4g}, P_wm {p_wm[k]:.4g})")
        if not det["present"]:
            failures.append(f"key {d}: mark not detected right after insertion (score {fmt(det['score'])}, "
                            f"threshold {fmt(det['threshold'])}, p {fmt(det['p_value'])})")
        rows.append(row)
    impacts = {k: [r[f"impact_{k}"] for r in rows] for k in keys}
    measured = {"impact_percent": {k: max(v) for k, v in impacts.items()},
                "impact_spread_over_keys": {k: max(v) - min(v) for k, v in impacts.items()},
                "unmarked_spread": spread, "M": len(model_seeds), "D": len(key_seeds),
                "detected": sum(r["detected"] for r in rows)}
    title = f"Imperceptibility of {method.name} on {task_name} {_cfg(config)}"
    clause = {"NCT": "NNW-TEC §7.2.5", "RTW": "NNW-TEC §7.3.4", "TBW": "NNW-TEC §7.4.4"}.get(method.name,
                                                                                        "NNW-NNT Imperceptibility")
    if failures:
        return ClauseResult(clause, title, FAIL, "; ".join(failures), measured,
                            {"impact_bound_percent": bound_percent}, rows, table)
    msg = (f"Impact {', '.join(f'{k} {max(v):.2f}%' for k, v in impacts.items())} (bound {bound_percent}%, "
           f"unmarked spread {', '.join(f'{k} {v:.4g}' for k, v in spread.items())}); detected with all {len(rows)} keys")
    return ClauseResult(clause, title, PASS, msg, measured, {"impact_bound_percent": bound_percent}, rows, table)


def _cfg(config: Mapping[str, Any]) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in config.items()) + ")"
