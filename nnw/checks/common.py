"""Helpers shared by the checks: number formatting and the identities Modified models are cached under."""
from __future__ import annotations

from typing import Any, Mapping



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
