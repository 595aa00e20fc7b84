"""Watermark Overwriting with five Actors (NNW-TEC §7.2.6, Figure 4; §5.2.2 roles).

Five marks (Architect, Trainer, Tracker, Distributor, Generic user) are inserted one after the
other into the same model; marks 2–5 all include the same share q of the 1st mark's positions, so
q of its weights are overwritten (multi-mark methods such as NCT expose ``overlap_with``/
``overlap`` in their config and ``indices(key)``). Figure 4
plots the 1st mark's correlation against the share of its weights replaced by later marks.

Verdict: with no shared positions every Actor's mark is recovered after all five insertions, and
the 1st mark survives up to the profile's ``max_overlap`` share; the curve is recorded.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from nnw.checks.common import fmt
from nnw.checks.result import FAIL, PASS, ClauseResult

ACTORS = ("Architect", "Trainer", "Tracker", "Distributor", "Generic user")


def actor_name(i: int) -> str:
    """The Actor of the ``i``-th mark (0-based) in §7.2.6's order; later marks are numbered."""
    return ACTORS[i] if i < len(ACTORS) else f"Actor {i + 1}"


def recovered(method, model, key, task) -> dict[str, Any]:
    """Is the mark of ``key`` still recovered in ``model``? Decoding methods whose payload names an
    Actor must decode that Actor from a valid payload (CRC) — "whose mark is this"; the others
    must detect the mark. Read blind (:func:`nnw.checks.campaign.run_blind`)."""
    from nnw.checks.campaign import Read, run_blind

    (row,) = run_blind(method, [Read(model, key)], prepare=task.prepare, seed=0, decode=method.tags.decodes)
    cell = {"detected": row["detected"], "recovered": row["detected"], "score": row["score"],
            "threshold": row["threshold"]}
    if method.tags.decodes:
        cell.update(ber=row.get("ber"), actor_id=row.get("actor"), valid=row.get("payload_valid"))
        if "ser" in row:
            cell["ser"] = row["ser"]
        if cell["actor_id"] is not None or cell["valid"] is not None:
            cell["recovered"] = bool(cell["valid"]) and cell["actor_id"] == key.config.get("actor")
    return cell


def actor_recovery(method, task, marks: Sequence[tuple[Any, Any]]) -> list[dict[str, Any]]:
    """§7.2.6 stage by stage: ``marks`` is ``[(model after mark i, key of mark i)]`` in insertion
    order; for each stage, which of the marks inserted so far are still recovered."""
    out = []
    for j, (model, _) in enumerate(marks):
        cells = [recovered(method, model, key, task) for _, key in marks[: j + 1]]
        out.append({"after": actor_name(j), "marks": j + 1,
                    "recovered": [actor_name(i) for i, c in enumerate(cells) if c["recovered"]],
                    "lost": [actor_name(i) for i, c in enumerate(cells) if not c["recovered"]],
                    "cells": cells})
    return out


def check_overwriting(zoo, method, task_name: str, config: Mapping[str, Any], *, overlaps: Sequence[float],
                      marks: int = 5, max_overlap: float = 0.5, model_seed: int = 0, key_seed: int = 0) -> ClauseResult:
    task = zoo.task(task_name)
    base, _ = zoo.unmarked(task_name, model_seed)
    rows, failures = [], []
    for q in overlaps:
        model = base
        keys, stages = [], []
        for i in range(marks):
            cfg = {**config, "actor": i}
            if keys and q > 0:  # every later mark overwrites the same share q of the 1st mark's positions
                first = method.indices(keys[0]) if hasattr(method, "indices") else None
                cfg.update(overlap_with=keys[0] if first is None else first[: round(q * len(first))], overlap=q)
            key = method.keygen(model, seed=10 * key_seed + i + 1, config=cfg)
            model = method.embed(model, key)
            keys.append(key)
            stages.append((model, key))
        actors = actor_recovery(method, task, stages)
        dets = actors[-1]["cells"]  # every mark, read after the last insertion
        row = {"overlap": q, "first_mark_score": dets[0]["score"], "first_mark_detected": dets[0]["detected"],
               "threshold": dets[0]["threshold"],
               **{f"{actor_name(i)}_detected": d["detected"] for i, d in enumerate(dets)},
               "actors": actors}
        rows.append(row)
        if q == 0 and not all(d["detected"] for d in dets):
            lost = [actor_name(i) for i, d in enumerate(dets) if not d["detected"]]
            failures.append(f"with disjoint positions the marks of {lost} are lost after {marks} insertions")
        if q <= max_overlap and not dets[0]["detected"]:
            failures.append(f"1st mark lost when {q:.0%} of its weights are shared with later marks "
                            f"(score {fmt(dets[0]['score'])} ≤ threshold {fmt(dets[0]['threshold'])})")
        if not dets[-1]["detected"]:
            failures.append(f"the last Actor's mark is not detected at overlap {q:.0%}")
    measured = {"overlap": [r["overlap"] for r in rows], "first_mark_score": [r["first_mark_score"] for r in rows],
                "first_mark_detected": [r["first_mark_detected"] for r in rows]}
    title = f"Watermark Overwriting of {method.name} by {marks - 1} further Actors on {task_name} (Figure 4)"
    threshold = {"max_overlap_asserted": max_overlap, "detection": "the method's detection rule"}
    # Figure 4 is a curve: NNW-TEC states no pass rule for it, so this one is the suite's
    decision = {"rule": f"with disjoint positions all {marks} Actors' marks are recovered after the last insertion; "
                        f"the 1st mark is recovered while at most {max_overlap:.0%} of its positions are shared; "
                        "the last Actor's mark is always recovered",
                "policy": "suite policy (profile methods.<method>.overwriting), not stated by NNW-TEC"}
    if failures:
        return ClauseResult("NNW-TEC §7.2.6 Figure 4", title, FAIL, "; ".join(failures), measured, threshold, rows, "F4",
                            decision=decision)
    return ClauseResult("NNW-TEC §7.2.6 Figure 4", title, PASS,
                        f"all {marks} Actors recovered; 1st mark survives up to {max_overlap:.0%} shared positions",
                        measured, threshold, rows, "F4", decision=decision)
