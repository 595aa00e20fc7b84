"""Integrity verification — "Algorithmic Integrity" (NNW-TEC §3: the equivalence of the
Traceability Data extracted from a modified NN and those extracted from an unmodified NN; §2 1a;
IEEE 3304 use case "verify the integrity of an NN").

At distribution time the Tracker extracts the Traceability Data of each model with its key (the
reference). Later, the model is judged *intact* iff the data extracted now equals the reference
bit for bit. The clause: unmodified models are judged intact (no false alarm) and every
Modification, down to the weakest value of its grid, is judged modified (no missed detection).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from nnw.checks.result import FAIL, PASS, ClauseResult
from nnw.metrics import false_alarm_rate, missed_detection_rate


def check_integrity(zoo, method, task_name: str, config: Mapping[str, Any], modification=None, *,
                    model_seeds: Sequence[int], key_seed: int = 0) -> ClauseResult:
    rows = []
    for s in model_seeds:
        model, _ = zoo.unmarked(task_name, s)
        key = method.keygen(model, seed=key_seed + 100 * s, config={**config, "mode": "fingerprint"})
        reference = method.extract(model, key).clone()
        if modification is not None:
            identity = {"task": task_name, "unmarked_seed": s, "name": f"{task_name} unmarked seed {s}"}
            model = zoo.modified(task_name, model, modification, seed=1000 + s, identity=identity, method=method, key=key)
        now = method.extract(model, key)
        diff = (now.double() - reference.double()).abs()
        rows.append({"model": f"seed {s}", "intact": bool(torch.equal(now, reference)),
                     "changed_positions": int((diff > 0).sum()), "max_abs_change": float(diff.max())})
    what = "unmodified" if modification is None else modification.name
    title = f"Integrity verification of {task_name} models with {method.name} ({what})"
    if modification is None:
        rate = false_alarm_rate(sum(not r["intact"] for r in rows), len(rows))
        measured = {"judged_modified": rate.k, "models": rate.n, "false_alarm_rate": rate.value,
                    "false_alarm_ci": [rate.low, rate.high]}
        ok, expect = rate.k == 0, "intact"
    else:
        rate = missed_detection_rate(sum(r["intact"] for r in rows), len(rows))
        measured = {"judged_intact": rate.k, "models": rate.n, "missed_detection_rate": rate.value,
                    "missed_detection_ci": [rate.low, rate.high]}
        ok, expect = rate.k == 0, "modified"
    msg = (f"{len(rows) - rate.k}/{len(rows)} models judged {expect}" if ok else
           f"{rate.k}/{len(rows)} models not judged {expect} (rate {rate.value:.2f}, CI [{rate.low:.3f}, {rate.high:.3f}])")
    return ClauseResult("NNW-TEC §3 Algorithmic Integrity", title, PASS if ok else FAIL, msg, measured,
                        {"judged": expect, "rule": "Traceability Data bit-identical to the reference"}, rows)
