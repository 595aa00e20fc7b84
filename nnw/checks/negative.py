"""Negative controls: false alarms (IEEE 3304: record the false alarm rate; NNW-NNT: M unmarked
models × (D + 1) payloads).

The detector, with each of the D keys, is run on the M unmarked (independently trained) models —
after the same Modification when one is given — and on marked models with the *other* keys.
None of these carries the mark. A detector at significance α may raise false alarms at rate α, so
the clause fails only when the observed rate is *significantly* above the nominal α: the lower
Clopper–Pearson bound of the false-alarm rate exceeds α. A detector that always says "present"
fails; a calibrated one passes.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from nnw.checks.common import detection_row, unmarked_identity
from nnw.checks.result import FAIL, PASS, ClauseResult
from nnw.metrics import false_alarm_rate


def check_false_alarms(zoo, method, task_name: str, config: Mapping[str, Any], modification=None, *,
                       key_seeds: Sequence[int], model_seeds: Sequence[int], nominal: float,
                       marked_seed: int = 0, confidence: float = 0.95) -> ClauseResult:
    task = zoo.task(task_name)
    keys = {d: zoo.marked(task_name, method, config, marked_seed, d) for d in key_seeds}
    rows = []
    for s in model_seeds:
        model, _ = zoo.unmarked(task_name, s)
        if modification is not None:
            identity = unmarked_identity(task_name, s)
            model = zoo.modified(task_name, model, modification, seed=1000 + s, identity=identity,
                                 method=method, key=keys[key_seeds[0]].key)
        for d, m in keys.items():
            rows.append({"model": f"unmarked seed {s}", "key_seed": d, **detection_row(method, model, m.key, task)})
    if modification is None:  # marked models read with another actor's key
        for d, m in keys.items():
            for d2, other in keys.items():
                if d2 != d:
                    rows.append({"model": f"marked key {d}", "key_seed": d2,
                                 **detection_row(method, m.model, other.key, task)})
    fa = false_alarm_rate(sum(r["detected"] for r in rows), len(rows), confidence=confidence)
    measured = {"false_alarms": fa.k, "negatives": fa.n, "false_alarm_rate": fa.value,
                "false_alarm_ci": [fa.low, fa.high], "max_score": max(r["score"] for r in rows)}
    what = "unmodified" if modification is None else f"after {modification.name}"
    title = f"False alarms of {method.name} on never-marked {task_name} models ({what})"
    threshold = {"nominal_false_alarm_rate": nominal, "confidence": confidence}
    clause = "IEEE 3304 false alarm rate"
    if fa.low > nominal:
        return ClauseResult(clause, title, FAIL,
                            f"{fa.k}/{fa.n} false alarms: rate {fa.value:.2f}, {int(confidence * 100)}% CI "
                            f"[{fa.low:.3f}, {fa.high:.3f}] lies above the nominal {nominal}", measured, threshold, rows)
    return ClauseResult(clause, title, PASS, f"{fa.k}/{fa.n} false alarms (rate {fa.value:.2f}, CI "
                        f"[{fa.low:.3f}, {fa.high:.3f}]) — consistent with the nominal {nominal}",
                        measured, threshold, rows)
