"""Robustness (NNW-TEC §7.2.6, §7.3.5, §7.4.5; Tables 4–11, 13–16, 18–21; NNW-NNT procedure).

For each key: apply the Modification to the marked model, measure the task error
(eq. 2, relative to the unmodified marked model) and the detection figure. §8: "the mark can be
extracted before the performance of the Modified models drops" — so the mark must be detected in
every row where the Modified model is still useful (error ≤ the profile's tolerance); rows where
the model is already broken are recorded, not asserted. Decoding methods also report BER/SER.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from nnw.checks.common import detection_row, fmt, marked_identity, worst_relative_error
from nnw.checks.overwriting import actor_recovery
from nnw.checks.result import FAIL, PASS, ClauseResult
from nnw.metrics import missed_detection_rate

CLAUSES = {"NCT": "NNW-TEC §7.2.6", "RTW": "NNW-TEC §7.3.5", "TBW": "NNW-TEC §7.4.5"}


def check_robustness(zoo, method, task_name: str, config: Mapping[str, Any], modification, *,
                     key_seeds: Sequence[int], tolerance: float, marked_seed: int = 0,
                     table: str | None = None) -> ClauseResult:
    task = zoo.task(task_name)
    rows, failures = [], []
    for d in key_seeds:
        m = zoo.marked(task_name, method, config, marked_seed, d)
        identity = marked_identity(task_name, method, config, marked_seed, d)
        stages = None
        if modification.family == "overwriting":  # §7.2.6: which Actors are recovered after each later mark
            stages = zoo.overwritten(task_name, m.model, modification, seed=d, identity=identity, method=method,
                                     key=m.key)
            modified = stages[-1][0]
        else:
            modified = zoo.modified(task_name, m.model, modification, seed=d, identity=identity, method=method,
                                    key=m.key)
        perf = zoo.evaluate(task_name, modified, {**identity, "modification": modification.cache_id, "seed": d})
        err = worst_relative_error(perf, m.record["performance"], task.performance_keys)
        row = {"key_seed": d, "error_percent": 100 * err, "useful": err <= tolerance, **perf,
               **detection_row(method, modified, m.key, task)}
        if stages is not None:
            row["actors"] = actor_recovery(method, task, [(m.model, m.key)] + stages)
        rows.append(row)
        if row["useful"] and not row["detected"]:
            failures.append(f"key {d}: mark not detected after {modification.name} while the model is still useful "
                            f"(error {100 * err:.2f}% ≤ {100 * tolerance:g}%; score {fmt(row['score'])}, "
                            f"threshold {fmt(row['threshold'])}, p {fmt(row['p_value'])})")
    useful = [r for r in rows if r["useful"]]
    missed = missed_detection_rate(sum(not r["detected"] for r in useful), len(useful))
    measured = {"error_percent": [r["error_percent"] for r in rows], "detected": [r["detected"] for r in rows],
                "score": [r["score"] for r in rows], "useful_rows": len(useful),
                "missed_detection_rate": missed.value, "missed_detection_ci": [missed.low, missed.high]}
    if any("actors" in r for r in rows):
        measured["actors_recovered_at_end"] = [len(r["actors"][-1]["recovered"]) for r in rows]
    if len(rows) > 1:
        measured["score_spread_over_keys"] = max(measured["score"]) - min(measured["score"])
    if method.tags.decodes:
        measured["ber"] = [r.get("ber") for r in rows]
        measured["ser"] = [r.get("ser") for r in rows]
    title = f"Robustness of {method.name} against {modification.name} on {task_name}"
    threshold = {"useful_error_tolerance_percent": 100 * tolerance, "detection": _criterion(method)}
    clause = CLAUSES.get(method.name, "NNW-NNT Robustness")
    if failures:
        return ClauseResult(clause, title, FAIL, "; ".join(failures), measured, threshold, rows, table)
    if not useful:
        msg = f"every Modified model is broken (error > {100 * tolerance:g}%): recorded, not asserted"
    else:
        msg = f"detected in all {len(useful)} useful Modified models ({len(rows)} keys)"
    return ClauseResult(clause, title, PASS, msg, measured, threshold, rows, table)


def _criterion(method) -> str:
    return {"NCT": "Spearman rho, one-sided 5% (critical value from n)", "RTW": "BER = 0",
            "TBW": "trigger-set share > 40%"}.get(method.name, "the method's own detector")
