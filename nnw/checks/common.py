"""Helpers shared by the checks: detection, performance and the relative error of eq. (2)."""
from __future__ import annotations

from typing import Any, Mapping



def detection_row(method, model, key, task) -> dict[str, Any]:
    det = method.detect(model, key, prepare=task.prepare)
    row = {"detected": bool(det.present), "score": float(det.score), "threshold": float(det.threshold),
           "p_value": None if det.p_value is None else float(det.p_value)}
    if method.tags.decodes:
        dec = method.decode(model, key)
        row.update(ber=None if dec.ber is None else float(dec.ber), actor=dec.actor_id, payload_valid=dec.valid)
        if "ser" in dec.details:
            row["ser"] = float(dec.details["ser"])
    return row


def fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


def marked_identity(task_name: str, method, config: Mapping[str, Any], model_seed: int, key_seed: int) -> dict[str, Any]:
    """What determines a marked model: the identity its Modified models are cached under."""
    from nnw.methods.identity import method_identity

    return {"task": task_name, **method_identity(method), "config": dict(config), "model_seed": model_seed, "key_seed": key_seed,
            "name": f"{task_name} {method.name} key {key_seed}"}


def unmarked_identity(task_name: str, seed: int) -> dict[str, Any]:
    """What determines an unmarked model: the identity its Modified models are cached under."""
    return {"task": task_name, "unmarked_seed": seed, "name": f"{task_name} unmarked seed {seed}"}
