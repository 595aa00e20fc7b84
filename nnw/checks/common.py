"""Helpers shared by the checks: number formatting and the identities Modified models are cached under."""
from __future__ import annotations

import json
from typing import Any, Mapping



def fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


def marked_identity(task_name: str, method, config: Mapping[str, Any], model_seed: int, key_seed: int) -> dict[str, Any]:
    """What determines a marked model: the identity its Modified models are cached under."""
    from nnw.methods.identity import method_identity

    return {"task": task_name, **method_identity(method), "config": dict(config), "model_seed": model_seed, "key_seed": key_seed,
            "name": f"{task_name} {method.name} key {key_seed}"}


def reads_spec(zoo, method, task_name: str, kind: str, name: str, **fields: Any) -> dict[str, Any]:
    """The model-cache spec of what a method's blind reads produced on ``task_name`` (a campaign's
    rows, null Keys, fingerprint rows): deterministic given the recipe, the task, the method's code,
    the numerics path and ``fields`` (made plain JSON)."""
    from nnw.methods.identity import method_identity
    from nnw.zoo import RECIPE_VERSION

    return {"kind": kind, "recipe_version": RECIPE_VERSION, "task": zoo.task(task_name).spec(),
            **method_identity(method), **json.loads(json.dumps(fields, default=str)), "numerics": zoo.numerics,
            "name": name}


def unmarked_identity(task_name: str, seed: int) -> dict[str, Any]:
    """What determines an unmarked model: the identity its Modified models are cached under."""
    return {"task": task_name, "unmarked_seed": seed, "name": f"{task_name} unmarked seed {seed}"}
