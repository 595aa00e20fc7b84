"""Integrity verification — "Algorithmic Integrity" (NNW-TEC §3: the equivalence of the
Traceability Data extracted from a modified NN and those extracted from an unmodified NN; §2 1a;
IEEE 3304 use case "verify the integrity of an NN").

When a model is distributed, the Tracker reads its Traceability Data with the key
(``method.traceability_data``: NCT's fingerprint θ_I, RTW's projections W_l X, TBW's trigger-set
logits) and keeps them as the reference. Later, the model is judged *intact* iff the data read now
equal the reference bit for bit. Fingerprinting methods verify fingerprinted (unmarked) models,
one per model seed; watermarks verify their marked models, one per key (D keys). The clause:
unmodified models are judged intact (no false alarm) and every Modification, down to the weakest
value of its grid, is judged modified (no missed detection).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from nnw.checks.common import marked_identity, unmarked_identity
from nnw.checks.result import FAIL, PASS, ClauseResult
from nnw.metrics import false_alarm_rate, missed_detection_rate


def _subjects(zoo, method, task_name: str, config: Mapping[str, Any], model_seeds, key_seeds, marked_seed):
    """(label, model, key, identity of the model, modification seed) of each model to verify."""
    if method.tags.fingerprints:
        for s in model_seeds:
            model, _ = zoo.unmarked(task_name, s)
            key = method.keygen(model, seed=100 * s, config={**config, "mode": "fingerprint"})
            yield f"model seed {s}", model, key, unmarked_identity(task_name, s), 1000 + s
    else:
        for d in key_seeds:
            m = zoo.marked(task_name, method, config, marked_seed, d)
            identity = marked_identity(task_name, method, config, marked_seed, d)
            yield f"key {d}", m.model, m.key, identity, d  # same Modified models as the robustness cases


def check_integrity(zoo, method, task_name: str, config: Mapping[str, Any], modification=None, *,
                    model_seeds: Sequence[int], key_seeds: Sequence[int] = (0,), marked_seed: int = 0) -> ClauseResult:
    task = zoo.task(task_name)
    rows = []
    for label, model, key, identity, seed in _subjects(zoo, method, task_name, config, model_seeds, key_seeds,
                                                       marked_seed):
        reference = method.traceability_data(model, key, prepare=task.prepare).detach().cpu().clone()
        if modification is not None:
            model = zoo.modified(task_name, model, modification, seed=seed, identity=identity, method=method, key=key)
        now = method.traceability_data(model, key, prepare=task.prepare).detach().cpu()
        if now.shape != reference.shape:
            changed, max_change = int(reference.numel()), float("inf")
        else:
            diff = (now.double() - reference.double()).abs()
            changed, max_change = int((diff > 0).sum()), float(diff.max()) if diff.numel() else 0.0
        rows.append({"model": label, "intact": bool(now.shape == reference.shape and torch.equal(now, reference)),
                     "values": int(reference.numel()), "changed_values": changed, "max_abs_change": max_change})
    what = "unmodified" if modification is None else modification.name
    subject = "fingerprinted" if method.tags.fingerprints else "marked"
    title = f"Integrity verification of {subject} {task_name} models with {method.name} ({what})"
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
    measured["changed_values"] = [r["changed_values"] for r in rows]
    msg = (f"{len(rows) - rate.k}/{len(rows)} models judged {expect}" if ok else
           f"{rate.k}/{len(rows)} models not judged {expect} (rate {rate.value:.2f}, CI [{rate.low:.3f}, {rate.high:.3f}])")
    return ClauseResult("NNW-TEC §3 Algorithmic Integrity", title, PASS if ok else FAIL, msg, measured,
                        {"judged": expect, "rule": "Traceability Data bit-identical to the reference"}, rows)
