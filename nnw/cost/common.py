"""What the cost measurements share: their sizes (:data:`SETTINGS`, a profile's ``"cost"`` section),
device synchronization, and the plumbing of a cut-short training run."""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nnw.hooks import TrainingHook

#: Sizes of the cost measurements; a profile may override them in an optional ``"cost"`` section.
SETTINGS: dict[str, Any] = {
    "steps": 6,               # timed batch iterations per round and arm
    "warmup_steps": 1,        # iterations run before the timed ones, in each round
    "rounds": 5,              # timed rounds per arm, alternating (median over rounds)
    "warmup_rounds": 1,       # untimed rounds first (pytest-benchmark warm-up)
    "check_every": None,      # mark check period in batch iterations (None: default_check_every)
    "max_insert_steps": None,  # insertion budget (None: the task's full training)
    "detection_rounds": 10,
    "inference_rounds": 5,
    "insertion_rounds": 20,   # Figure 5, per N
    "figure5_extra_N": [4096, 16144],
    "complexity_slack": 3.0,  # time(n2)/time(n1) <= slack * (n2 log n2)/(n1 log n1)
}


def cost_settings(profile_data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """:data:`SETTINGS` updated with the profile's optional ``"cost"`` section (unknown keys rejected)."""
    out = dict(SETTINGS)
    section = dict((profile_data or {}).get("cost") or {})
    unknown = sorted(set(section) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown cost setting(s) {unknown} in the profile; known: {sorted(SETTINGS)}")
    out.update(section)
    for name in ("steps", "rounds", "detection_rounds", "inference_rounds", "insertion_rounds"):
        if isinstance(out[name], bool) or not isinstance(out[name], int) or out[name] < 1:
            raise ValueError(f"cost setting {name!r} must be an int >= 1, got {out[name]!r}")
    for name in ("warmup_steps", "warmup_rounds"):
        if isinstance(out[name], bool) or not isinstance(out[name], int) or out[name] < 0:
            raise ValueError(f"cost setting {name!r} must be an int >= 0, got {out[name]!r}")
    for name in ("check_every", "max_insert_steps"):
        v = out[name]
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"cost setting {name!r} must be null or an int >= 1, got {v!r}")
    return out


def synchronize(device: torch.device | str | None) -> None:
    """Wait for the device's queued work (CUDA); a no-op on CPU."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(torch.device(device))


class _Stop(Exception):
    """Raised from a hook to end a training run early (caught by the functions of this module)."""


def _with_train_set(task: Any, train_set: Any) -> Any:
    if dataclasses.is_dataclass(task) and not isinstance(task, type):
        return dataclasses.replace(task, train=train_set)
    clone = copy.copy(task)
    clone.train = train_set
    return clone


def _resolve_hooks(hook: Any, model: nn.Module) -> list[TrainingHook]:
    """``None`` -> no hook; a TrainingHook -> itself; a callable -> ``hook(model)`` (may return None)."""
    if hook is None:
        return []
    if isinstance(hook, TrainingHook):
        return [hook]
    if callable(hook):
        made = hook(model)
        return [] if made is None else [made]
    raise TypeError(f"expected a TrainingHook, a callable model -> hook, or None; got {type(hook).__name__}")

