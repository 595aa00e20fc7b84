"""Memory: the footprint of one training batch iteration, counted, and the measured peak of a call.

**Memory footprint.** Counted, on every device, for one batch iteration: parameters + buffers +
gradients + optimizer state + the activations autograd saves for backward (counted by
``torch.autograd.graph.saved_tensors_hooks``, one count per storage) + the method's resident
state (the tensors its hook holds: RTW's X and b, TBW's prepared triggers, NCT's key). The count
is deterministic and independent of the allocator and of other jobs, and it is what compares a
marked with an unmarked training. Beside it, :func:`peak_memory` measures the call's peak: on
CUDA the caching allocator's exact peak (``torch.cuda.max_memory_allocated``); on CPU, where no
allocator peak exists (tracemalloc does not see tensor memory, ``ru_maxrss`` only ever grows),
the peak resident set (Linux ``VmHWM`` after resetting it through ``/proc/self/clear_refs``;
"""
from __future__ import annotations

import resource
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnw.cost.common import _resolve_hooks, _with_train_set
from nnw.layers import model_device
from nnw.hooks import TrainingHook
from nnw.methods.base import Key
from nnw.training import train


@dataclass
class PeakMemory:
    """Peak memory of a call above the memory in use when it started; ``source`` says what was read."""

    bytes: int | None
    source: str   # "cuda.max_memory_allocated" | "VmHWM" (Linux, reset via clear_refs) | "ru_maxrss" | "unavailable"


def _proc_status_kb(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _maxrss_bytes() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) if sys.platform == "darwin" else int(r) * 1024


def peak_memory(fn: Callable[[], Any], device: torch.device | str | None = None) -> tuple[Any, PeakMemory]:
    """``(fn(), peak)``: the peak memory of the call above what was in use when it started.

    CUDA: the caching allocator's exact peak of allocated tensor memory. CPU: the peak resident
    set (Linux ``VmHWM``, reset before the call) minus the resident set before the call — includes
    non-tensor memory and undercounts memory the allocator recycles; where the peak cannot be
    reset, the growth of ``ru_maxrss`` (zero unless the process reaches a new maximum)."""
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        out = fn()
        torch.cuda.synchronize(dev)
        return out, PeakMemory(int(torch.cuda.max_memory_allocated(dev) - base), "cuda.max_memory_allocated")
    if _reset_peak_rss():
        rss0 = _proc_status_kb("VmRSS")
        out = fn()
        hwm = _proc_status_kb("VmHWM")
        if rss0 is not None and hwm is not None:
            return out, PeakMemory(max(0, hwm - rss0) * 1024, "VmHWM")
        return out, PeakMemory(None, "unavailable")
    before = _maxrss_bytes()
    out = fn()
    return out, PeakMemory(max(0, _maxrss_bytes() - before), "ru_maxrss")


def _storage_key(t: torch.Tensor) -> tuple[str, int] | None:
    try:
        st = t.untyped_storage()
        return (str(t.device), int(st.data_ptr()))
    except (RuntimeError, NotImplementedError):
        return None


def _storage_bytes(t: torch.Tensor) -> int:
    try:
        return int(t.untyped_storage().nbytes())
    except (RuntimeError, NotImplementedError):
        return int(t.numel() * t.element_size())


def _owned_storages(model: nn.Module) -> set:
    keys = set()
    for t in [*model.parameters(), *model.buffers()]:
        k = _storage_key(t)
        if k is not None:
            keys.add(k)
    return keys


def tensor_bytes(obj: Any, *, exclude: Iterable = (), max_depth: int = 4) -> int:
    """Bytes of the distinct tensor storages reachable from ``obj`` (tensors, Keys, mappings,
    sequences, attributes of plain objects), each storage once; ``nn.Module`` objects and
    storages in ``exclude`` (e.g. the model's own parameters) are skipped."""
    seen = set(exclude)
    visited: set[int] = set()
    total = 0

    def walk(o: Any, depth: int) -> None:
        nonlocal total
        if depth > max_depth or o is None or isinstance(o, (str, bytes, int, float, bool, type)):
            return
        if isinstance(o, torch.Tensor):
            k = _storage_key(o)
            if k is None or k not in seen:
                if k is not None:
                    seen.add(k)
                total += _storage_bytes(o)
            return
        if isinstance(o, nn.Module) or id(o) in visited:
            return
        visited.add(id(o))
        if isinstance(o, Key):
            walk(o.tensors, depth + 1)
            walk(o.cache, depth + 1)
        elif isinstance(o, Mapping):
            for v in list(o.values()):
                walk(v, depth + 1)
        elif isinstance(o, (list, tuple, set, frozenset)):
            for v in o:
                walk(v, depth + 1)
        elif hasattr(o, "__dict__") and (isinstance(o, TrainingHook) or not callable(o)):
            for v in list(vars(o).values()):  # plain objects and hooks; not functions or bound methods
                walk(v, depth + 1)

    walk(obj, 0)
    return total


@dataclass
class Footprint:
    """Memory of one training batch iteration, counted (bytes), and the measured peak for context."""

    parameters: int
    buffers: int
    gradients: int
    optimizer_state: int
    activations: int              # saved for backward, one iteration (distinct storages)
    method_state: int             # tensors the method's hook holds (key, triggers, projection matrix)
    peak: PeakMemory

    @property
    def total(self) -> int:
        return (self.parameters + self.buffers + self.gradients + self.optimizer_state + self.activations
                + self.method_state)

    def as_dict(self) -> dict[str, Any]:
        return {"parameters": self.parameters, "buffers": self.buffers, "gradients": self.gradients,
                "optimizer_state": self.optimizer_state, "activations": self.activations,
                "method_state": self.method_state, "total": self.total,
                "peak_measured": self.peak.bytes, "peak_source": self.peak.source}


def training_footprint(task: Any, model: nn.Module, hook: Any = None, *, device: torch.device | str | None = None,
                       seed: int = 0) -> Footprint:
    """The memory of one batch iteration of :func:`nnw.training.train` on ``model`` with ``hook``
    (see the module docstring): one full ``train()`` run of a single iteration is made."""
    device = torch.device(device) if device is not None else model_device(model)
    model = model.to(device)
    hooks = _resolve_hooks(hook, model)
    bs = min(task.recipe.batch_size, len(task.train))
    sub = _with_train_set(task, task.train.subset(bs))
    owned = _owned_storages(model)
    saved: dict[tuple[str, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if isinstance(t, torch.Tensor):
            k = _storage_key(t)
            if k is not None and k not in owned:
                saved[k] = max(saved.get(k, 0), _storage_bytes(t))
        return t

    def run():
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            return train(model, sub, epochs=1, hooks=hooks, seed=seed, device=device)

    result, peak = peak_memory(run, device)
    owned = _owned_storages(model)
    params = sum(_storage_bytes(p) for p in model.parameters())
    buffers = sum(_storage_bytes(b) for b in model.buffers())
    grads = sum(_storage_bytes(p.grad) for p in model.parameters() if p.grad is not None)
    opt = tensor_bytes(result.optimizer_state)
    state = sum(tensor_bytes(h, exclude=owned) for h in hooks)
    return Footprint(params, buffers, grads, opt, sum(saved.values()), state, peak)


