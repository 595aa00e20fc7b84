"""Integrity verification — "Algorithmic Integrity" (NNW-TEC §3: the equivalence of the
Traceability Data extracted from a modified NN and those extracted from an unmodified NN; §2 1a;
IEEE 3304 use case "verify the integrity of an NN").

When a model is distributed, the Tracker reads its Traceability Data with the key
(``method.traceability_data``: NCT's fingerprint θ_I, RTW's projections W_l X, TBW's trigger-set
logits) and keeps them as the reference. Later, the model is judged *intact* iff the data read now
equal the reference bit for bit. The population (NNW-NNT): fingerprinting methods verify the M
fingerprinted (unmarked) models, each with D keys; watermarks the M × D marked models, each with its
Key. The clause: unmodified models are judged intact (no false alarm) and every Modification, down
to the weakest value of its grid, is judged modified (no missed detection). Every read goes through
the blind runner (:func:`nnw.checks.campaign.run_blind`: copies, the reference reads shuffled among
the others, each checked unchanged by digest). Each part is decided by
:func:`nnw.checks.decision.excess_rate` against ``max_miss_rate`` (0: one wrong judgement fails),
a pass needing power ≥ ``power_target`` against ``miss_rate_power_at``.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from nnw import tracker
from nnw.checks.campaign import Read, fail_on_misbehaviour, population_key_seed, run_blind
from nnw.checks.common import marked_identity, unmarked_identity
from nnw.checks.decision import excess_rate
from nnw.checks.result import ClauseResult


def _subjects(zoo, method, task_name: str, config: Mapping[str, Any], model_seeds, key_seeds):
    """(label, model, key, identity of the model, modification seed) of each model to verify: the
    population (M model seeds × D keys)."""
    if method.tags.fingerprints:
        for s in model_seeds:
            model, _ = zoo.unmarked(task_name, s)
            for d in key_seeds:
                key = method.keygen(model, seed=100 * s + d, config={**config, "mode": "fingerprint"})
                yield f"model seed {s} key {d}", model, key, unmarked_identity(task_name, s), 1000 + s
    else:
        for s in model_seeds:
            for d in key_seeds:
                seed = population_key_seed(s, d)
                m = zoo.marked(task_name, method, config, s, seed)
                identity = marked_identity(task_name, method, config, s, seed)
                # same Modified models as the robustness campaign (nnw.checks.population)
                yield (f"seed {s} key {d}" if len(model_seeds) > 1 else f"key {d}"), m.model, m.key, identity, seed


@fail_on_misbehaviour
def check_integrity(zoo, method, task_name: str, config: Mapping[str, Any], modification=None, *,
                    model_seeds: Sequence[int], key_seeds: Sequence[int] = (0,), marked_seed: int | None = None,
                    clauses_in_family: int = 1) -> ClauseResult:
    """Every Traceability Data read goes through the blind runner (copies, shuffled with the
    references, digest-checked). Unmodified: a model judged modified is a false alarm; Modified: a
    model judged intact is a missed detection. Both are decided by
    :func:`nnw.checks.decision.excess_rate` against ``max_miss_rate`` (0: the comparison is bit-exact,
    so a single wrong judgement fails), pass only with power ≥ ``power_target`` against
    ``miss_rate_power_at``. ``marked_seed`` (a watermark's one model seed) is kept for callers that
    verify one model seed only."""
    import hashlib
    import json

    task = zoo.task(task_name)
    pol = zoo.profile.decisions
    if marked_seed is not None and not method.tags.fingerprints:
        model_seeds = [marked_seed]
    reads, subjects = [], []
    for label, model, key, identity, seed in _subjects(zoo, method, task_name, config, model_seeds, key_seeds):
        now = model if modification is None else zoo.modified(task_name, model, modification, seed=seed,
                                                              identity=identity, method=method, key=key)
        reads += [Read(model, key, {"at": (label, "reference")}), Read(now, key, {"at": (label, "now")})]
        subjects.append(label)
    tag = json.dumps(["integrity", task_name, method.name, dict(config),
                      None if modification is None else modification.cache_id], sort_keys=True, default=str)
    out = {r["at"]: r["data"] for r in run_blind(method, reads, prepare=task.prepare, operation="traceability_data",
                                                 seed=int(hashlib.sha256(tag.encode()).hexdigest()[:8], 16))}
    rows = []
    for label in subjects:
        reference, now = out[(label, "reference")], out[(label, "now")]
        c = tracker.compare_traceability_data(reference, now)  # the command's rule
        rows.append({"model": label, "intact": c.intact, "values": c.values, "changed_values": c.changed_values,
                     "max_abs_change": c.max_abs_change})
    what = "unmodified" if modification is None else modification.name
    subject = "fingerprinted" if method.tags.fingerprints else "marked"
    title = f"Integrity verification of {subject} {task_name} models with {method.name} ({what})"
    if modification is None:
        expect, wrong, event = "intact", [r for r in rows if not r["intact"]], "false alarm"
    else:
        expect, wrong, event = "modified", [r for r in rows if r["intact"]], "missed detection"
    decision = excess_rate(len(wrong), len(rows), nominal=float(pol["max_miss_rate"]),
                           alpha=float(pol["family_alpha"]) / max(1, clauses_in_family),
                           power_at=float(pol["miss_rate_power_at"]), target_power=float(pol["power_target"]),
                           what=event, confidence=float(pol["confidence"]))
    st = decision.statistic
    ci = st.get("ci", [0.0, 1.0])
    if modification is None:
        measured = {"judged_modified": len(wrong), "models": len(rows), "false_alarm_rate": st.get("rate"),
                    "false_alarm_ci": ci}
    else:
        measured = {"judged_intact": len(wrong), "models": len(rows), "missed_detection_rate": st.get("rate"),
                    "missed_detection_ci": ci}
    measured.update(changed_values=[r["changed_values"] for r in rows], power=decision.power.get("power"))
    detail = ", ".join(r["model"] for r in wrong[:5])
    msg = f"{len(rows) - len(wrong)}/{len(rows)} models judged {expect}; " + decision.message + (
        f" — not judged {expect}: {detail}" if detail else "")
    return ClauseResult("NNW-TEC §3 Algorithmic Integrity", title, decision.verdict, msg, measured,
                        {"judged": expect, "rule": "Traceability Data bit-identical to the reference",
                         "max_rate": pol["max_miss_rate"], "clauses_in_family": clauses_in_family}, rows,
                        decision=decision.as_dict())
