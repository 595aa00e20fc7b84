"""Computational cost of a traceability method (NNW-TEC §7.2.7, §7.3.6, §7.4.6, Table 23, Figure 5).

MPAI-NNW V1's procedure "3) Computational cost evaluation" characterizes the *injection* by four
elements and the *detection/decoding* by two; this module measures each with plain functions
(no pytest; ``conformance/test_cost.py`` drives them with pytest-benchmark):

=============================================================  ==========================================
element (MPAI-NNW V1)                                          function
=============================================================  ==========================================
injection: memory footprint                                    :func:`training_footprint` (+ :func:`peak_memory`)
injection: time of one epoch normalized per batch              :func:`timed_training`, :func:`batch_iteration_time`,
                                                               :func:`compare_batch_iteration_time`
injection: epochs / batch iterations to insert (in training)   :func:`iterations_to_insert`
injection: inference time of the marked model                  :func:`inference_time`
detection/decoding: memory footprint and total duration        :func:`detection_cost`
NCT insertion time against N (Figure 5)                        :func:`insertion`
detection time no worse than O(n log n) (§7.2.7)               :func:`nlogn_violations`, :func:`loglog_slope`
=============================================================  ==========================================

**Batch iteration time.** :func:`timed_training` runs :func:`nnw.training.train` itself — the
loop every marked model of the suite is trained with — for ``warmup + steps`` batch iterations
of the task's recipe, with a :class:`StepTimer` hook last in the hook list. The timer stamps
``perf_counter`` at the start of the first epoch (after the other hooks' ``on_epoch_start``: an
NCT insertion at α = 0 is not a batch iteration) and after every step, synchronizing the device
first on CUDA; consecutive stamps delimit whole batch iterations (indexing, augmentation,
``prepare``, the method's extra batch and loss, forward, backward, optimizer step, hooks). The
first ``warmup`` iterations are dropped. The run stops by an exception after the last timed
iteration, so train()'s end-of-run work is not timed. "Increased batch iteration time (%)" of
Table 23 = (marked / unmarked − 1) × 100, each arm's figure being the median over rounds of the
round's median iteration time; the two arms run alternately, on the same data from the same
initial model, so that both see the same machine load. The rounds' means (the epoch time
normalized by the number of batches, as MPAI-NNW words it) are reported too; medians are used
because a machine shared with other jobs slows whole iterations at random, and on a quiet
machine the two agree.

**Iterations to insert.** :func:`iterations_to_insert` trains the model with the method's hook
on the task's full recipe (the training the zoo gives every marked model, with the same seed)
and checks the mark every ``check_every`` batch iterations and at the start of every epoch
(before the first iteration, and where an insertion at epoch α happens): inserted =
``detect(...).present`` and, for a decoding method, ``decode(...).ber == 0``. The run stops
at the first success; the count is the number of batch iterations done then (a multiple of
``check_every`` or an epoch boundary: the true first iteration lies in ``(count − check_every,
count]``). NCT gives 0 by design (α = 0: the mark is written by substitution before the first
iteration). The budget is the full training: a mark not found by its end was never inserted.
Check time is excluded from the training time reported.

**Memory footprint.** Counted, on every device, for one batch iteration: parameters + buffers +
gradients + optimizer state + the activations autograd saves for backward (counted by
``torch.autograd.graph.saved_tensors_hooks``, one count per storage) + the method's resident
state (the tensors its hook holds: RTW's X and b, TBW's prepared triggers, NCT's key). The count
is deterministic and independent of the allocator and of other jobs, and it is what compares a
marked with an unmarked training. Beside it, :func:`peak_memory` measures the call's peak: on
CUDA the caching allocator's exact peak (``torch.cuda.max_memory_allocated``); on CPU, where no
allocator peak exists (tracemalloc does not see tensor memory, ``ru_maxrss`` only ever grows),
the peak resident set (Linux ``VmHWM`` after resetting it through ``/proc/self/clear_refs``;
elsewhere the growth of ``ru_maxrss``) — context only: memory the allocator recycles is not seen.

**Detection cost.** :func:`detection_cost` times ``method.detect`` (and ``decode`` for a decoding
method) from a *cold* key — ``Key.cache`` (runtime-only derived data, e.g. NCT's de-obfuscated
indices and gather plan) cleared before each call, as for a verifier that has just loaded the
key file — and measures its memory peak.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nnw.checks.result import FAIL, PASS, ClauseResult
from nnw.hooks import TrainContext, TrainingHook
from nnw.layers import model_device
from nnw.methods.base import Detection, Key, Prepare, TraceabilityMethod
from nnw.training import train

__all__ = [
    "SETTINGS", "cost_settings", "synchronize",
    "StepTimer", "StepTiming", "timed_training", "batch_iteration_time", "IterationCost",
    "compare_batch_iteration_time",
    "InsertionRun", "iterations_to_insert", "default_check_every",
    "PeakMemory", "peak_memory", "tensor_bytes", "Footprint", "training_footprint",
    "inference_time", "run_detection", "DetectionCost", "detection_cost", "insertion",
    "nlogn_violations", "loglog_slope",
    "CostResult", "cost_clause", "injection_clause", "detection_clause", "insertion_time_clause", "complexity_clause",
]

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


# ---------------------------------------------------------------------------------------------
# batch iteration time
# ---------------------------------------------------------------------------------------------
class StepTimer(TrainingHook):
    """Stamps ``perf_counter`` at the first epoch start and after every step; stops after ``stop_after`` steps.

    Put it last in the hook list: its first stamp then follows the other hooks' ``on_epoch_start``.
    """

    def __init__(self, device: torch.device | str, stop_after: int | None = None) -> None:
        self.device = device
        self.stop_after = stop_after
        self.stamps: list[float] = []
        self._started = False

    def on_train_start(self, model: nn.Module, ctx: TrainContext) -> None:
        self.stamps.clear()
        self._started = False

    def on_epoch_start(self, model: nn.Module, epoch: int, ctx: TrainContext) -> None:
        if not self._started:
            self._started = True
            synchronize(self.device)
            self.stamps.append(time.perf_counter())

    def after_step(self, model: nn.Module, ctx: TrainContext) -> None:
        synchronize(self.device)
        self.stamps.append(time.perf_counter())
        if self.stop_after is not None and len(self.stamps) - 1 >= self.stop_after:
            raise _Stop

    @property
    def intervals(self) -> list[float]:
        return [b - a for a, b in zip(self.stamps, self.stamps[1:])]


@dataclass
class StepTiming:
    """Durations of the timed batch iterations of one run (warm-up iterations dropped)."""

    iteration_seconds: list[float]
    warmup: int
    total_seconds: float          # the whole train() call, set-up and warm-up included

    @property
    def mean(self) -> float:
        """Seconds per batch iteration: the timed time normalized by the number of iterations."""
        return statistics.fmean(self.iteration_seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.iteration_seconds)


def timed_training(task: Any, model: nn.Module, hooks: Sequence[TrainingHook] = (), *,
                   device: torch.device | str | None = None, steps: int = 6, warmup: int = 1,
                   seed: int = 0) -> StepTiming:
    """Train ``model`` in place for ``warmup + steps`` batch iterations with :func:`nnw.training.train`
    (the task's recipe, batch size and augmentation; ``hooks`` as given) and time each iteration.

    The train set is cut to the ``(warmup + steps) * batch_size`` images needed (cycled over
    epochs when the set is smaller)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
    device = torch.device(device) if device is not None else model_device(model)
    total = warmup + steps
    n = len(task.train)
    bs = min(task.recipe.batch_size, n)
    per_epoch = n // bs
    if per_epoch < 1:
        raise ValueError(f"task {getattr(task, 'name', '?')!r} has no full batch to train on")
    if total * bs <= n:
        sub, epochs = _with_train_set(task, task.train.subset(total * bs)), 1
    else:
        sub, epochs = task, math.ceil(total / per_epoch)
    timer = StepTimer(device, stop_after=total)
    t0 = time.perf_counter()
    try:
        train(model, sub, epochs=epochs, hooks=[*hooks, timer], seed=seed, device=device)
    except _Stop:
        pass
    synchronize(device)
    elapsed = time.perf_counter() - t0
    intervals = timer.intervals
    if len(intervals) < total:
        raise RuntimeError(f"the training ran {len(intervals)} batch iterations, {total} were asked for")
    return StepTiming(intervals[warmup:total], warmup, elapsed)


def batch_iteration_time(task: Any, model_factory: Callable[[], nn.Module], hook: Any = None, *,
                         device: torch.device | str | None = None, steps: int = 6, warmup: int = 1,
                         seed: int = 0) -> float:
    """Seconds per training batch iteration of a fresh ``model_factory()`` model, with ``hook``
    (a TrainingHook, a callable ``model -> hook`` — needed for single-use keys such as NCT's —
    or None for the unmarked training)."""
    model = model_factory()
    if device is not None:
        model = model.to(device)
    return timed_training(task, model, _resolve_hooks(hook, model), device=device, steps=steps, warmup=warmup,
                          seed=seed).mean


@dataclass
class IterationCost:
    """Seconds per batch iteration of the unmarked and the marked training, per round, and their ratio.

    A round's figure is the *median* of its iteration durations (``*_rounds``), robust to the bursts
    of other processes on a shared machine; the round's mean — the spec's "epoch time normalized
    by the number of batches" — is kept beside it (``*_means``). On a quiet machine they agree."""

    baseline_rounds: list[float]
    marked_rounds: list[float]
    baseline_means: list[float] = field(default_factory=list)
    marked_means: list[float] = field(default_factory=list)

    @classmethod
    def from_timings(cls, baseline: Iterable[StepTiming], marked: Iterable[StepTiming]) -> "IterationCost":
        baseline, marked = list(baseline), list(marked)
        return cls([t.median for t in baseline], [t.median for t in marked], [t.mean for t in baseline],
                   [t.mean for t in marked])

    @property
    def mean_increase_percent(self) -> float | None:
        """The increase computed from the rounds' means (None when they were not kept)."""
        if not self.baseline_means or not self.marked_means:
            return None
        return (statistics.median(self.marked_means) / statistics.median(self.baseline_means) - 1.0) * 100.0

    @property
    def baseline_seconds(self) -> float:
        return statistics.median(self.baseline_rounds)

    @property
    def marked_seconds(self) -> float:
        return statistics.median(self.marked_rounds)

    @property
    def increase_percent(self) -> float:
        """Table 23's "Increased batch iteration time (%)"."""
        return (self.marked_seconds / self.baseline_seconds - 1.0) * 100.0

    @property
    def baseline_spread_percent(self) -> float:
        """(max − min) / median of the unmarked rounds: the measurement noise of this machine."""
        b = self.baseline_rounds
        return (max(b) - min(b)) / self.baseline_seconds * 100.0


def compare_batch_iteration_time(task: Any, model_factory: Callable[[], nn.Module], hook: Any, *,
                                 device: torch.device | str | None = None, steps: int = 6, warmup: int = 1,
                                 rounds: int = 5, seed: int = 0) -> IterationCost:
    """Unmarked and marked training timed alternately, ``rounds`` times each (same data, same initial model)."""
    base, marked = [], []
    for _ in range(rounds):
        m = model_factory()
        base.append(timed_training(task, m if device is None else m.to(device), (), device=device, steps=steps,
                                   warmup=warmup, seed=seed))
        m = model_factory()
        m = m if device is None else m.to(device)
        marked.append(timed_training(task, m, _resolve_hooks(hook, m), device=device, steps=steps, warmup=warmup,
                                     seed=seed))
    return IterationCost.from_timings(base, marked)


# ---------------------------------------------------------------------------------------------
# batch iterations to insert the mark
# ---------------------------------------------------------------------------------------------
@dataclass
class InsertionRun:
    """Outcome of :func:`iterations_to_insert`."""

    iterations: int | None        # batch iterations done when the mark was first found; None: not within the budget
    check_every: int
    budget: int                   # batch iterations allowed (the full training by default)
    steps_run: int
    seconds: float                # training wall time, checks excluded
    check_seconds: float
    model: nn.Module              # the model at the end of the run (marked when ``iterations`` is not None)
    key: Key                      # the key as filled by the insertion (NCT: Original Traceability Data)
    detection: Detection | None   # at the first success, else at the last check
    ber: float | None             # decoding BER at that check (decoding methods)
    history: list[tuple[int, float]] = field(default_factory=list)   # (iterations done, detection score)

    @property
    def inserted(self) -> bool:
        return self.iterations is not None


def default_check_every(steps_per_epoch: int) -> int:
    """A tenth of an epoch: the check (e.g. TBW's inference on the trigger set) costs a fraction of an epoch."""
    return max(1, steps_per_epoch // 10)


class _InsertionChecker(TrainingHook):
    def __init__(self, method: TraceabilityMethod, hook: TrainingHook, key: Key, prepare: Prepare | None,
                 every: int, budget: int, device: torch.device) -> None:
        self.method, self.hook, self.key, self.prepare = method, hook, key, prepare
        self.every, self.budget, self.device = every, budget, device
        self.start_step: int | None = None
        self.found: int | None = None
        self.done = 0
        self.check_seconds = 0.0
        self.detection: Detection | None = None
        self.ber: float | None = None
        self.history: list[tuple[int, float]] = []
        self.error: Exception | None = None

    def _check(self, model: nn.Module, done: int, final: bool) -> None:
        t0 = time.perf_counter()
        key = getattr(self.hook, "key", self.key)
        try:
            det = self.method.detect(model, key, prepare=self.prepare)
            ber = self.method.decode(model, key).ber if self.method.tags.decodes else None
        except (ValueError, RuntimeError) as e:  # e.g. NCT before epoch α: no Original Traceability Data yet
            if final:
                raise
            self.error = e
            det, ber = None, None
        synchronize(self.device)
        self.check_seconds += time.perf_counter() - t0
        if det is None:
            return
        self.detection, self.ber = det, ber
        self.history.append((done, float(det.score)))
        if det.present and (ber is None or ber == 0.0):
            self.found = done
            raise _Stop

    def on_epoch_start(self, model: nn.Module, epoch: int, ctx: TrainContext) -> None:
        if self.start_step is None:
            self.start_step = ctx.step
            self._check(model, 0, final=self.budget == 0)
            if self.budget == 0:
                raise _Stop
        else:  # where insertions at an epoch start happen (NCT at epoch α)
            self._check(model, ctx.step - self.start_step, final=False)

    def after_step(self, model: nn.Module, ctx: TrainContext) -> None:
        self.done = ctx.step - (self.start_step or 0)
        last = self.done >= self.budget
        if self.done % self.every == 0 or last:
            self._check(model, self.done, final=last)
        if last:
            raise _Stop


def iterations_to_insert(task: Any, method: TraceabilityMethod, key: Key, model: nn.Module, *,
                         device: torch.device | str | None = None, seed: int = 0, check_every: int | None = None,
                         max_steps: int | None = None) -> InsertionRun:
    """Batch iterations of the task's training until the mark of ``key`` is found in ``model``.

    In-training methods: ``model`` (e.g. a fresh ``task.build_model(seed)``, with ``key`` drawn for
    it) is trained in place with ``method.training_hook(key)`` on the task's recipe, seeded like
    the zoo's marked models, and checked every ``check_every`` iterations (default
    :func:`default_check_every`). Post-training methods: ``method.embed`` (0 iterations).
    ``max_steps`` caps the budget (default and maximum: the full training)."""
    device = torch.device(device) if device is not None else model_device(model)
    model = model.to(device)
    prepare = getattr(task, "prepare", None)
    if method.tags.insertion == "post-training":
        t0 = time.perf_counter()
        marked = method.embed(model, key)
        synchronize(device)
        seconds = time.perf_counter() - t0
        det = method.detect(marked, key, prepare=prepare)
        ber = method.decode(marked, key).ber if method.tags.decodes else None
        ok = det.present and (ber is None or ber == 0.0)
        return InsertionRun(0 if ok else None, 1, 0, 0, seconds, 0.0, marked.eval(), key, det, ber,
                            [(0, float(det.score))])
    if method.tags.insertion != "in-training":
        raise ValueError(f"{method.name} inserts no mark (insertion={method.tags.insertion!r})")
    hook = method.training_hook(key, prepare=prepare)
    if hook is None:
        raise ValueError(f"{method.name} declares in-training insertion but its training_hook returned None")
    recipe = task.recipe
    n = len(task.train)
    per_epoch = n // min(recipe.batch_size, n)
    full = per_epoch * recipe.epochs
    budget = full if max_steps is None else min(int(max_steps), full)
    if budget < 0:
        raise ValueError(f"max_steps must be >= 0, got {max_steps!r}")
    every = default_check_every(per_epoch) if check_every is None else int(check_every)
    if every < 1:
        raise ValueError(f"check_every must be >= 1, got {check_every!r}")
    checker = _InsertionChecker(method, hook, key, prepare, every, budget, device)
    t0 = time.perf_counter()
    try:
        train(model, task, seed=seed, device=device, hooks=[hook, checker])
    except _Stop:
        pass
    synchronize(device)
    elapsed = time.perf_counter() - t0
    model.eval()
    return InsertionRun(checker.found, every, budget, checker.done, elapsed - checker.check_seconds,
                        checker.check_seconds, model, getattr(hook, "key", key), checker.detection, checker.ber,
                        checker.history)


# ---------------------------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# inference and detection
# ---------------------------------------------------------------------------------------------
def inference_time(model: nn.Module, x: torch.Tensor, *, rounds: int = 5, warmup: int = 1) -> float:
    """Median seconds of one inference ``model(x)`` (eval mode, no grad; the mode is restored)."""
    device = model_device(model)
    x = x.to(device)
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.no_grad():
            for i in range(warmup + rounds):
                synchronize(device)
                t0 = time.perf_counter()
                model(x)
                synchronize(device)
                if i >= warmup:
                    times.append(time.perf_counter() - t0)
    finally:
        model.train(was_training)
    return statistics.median(times)


def run_detection(method: TraceabilityMethod, model: nn.Module, key: Key, prepare: Prepare | None = None, *,
                  decode: bool = True) -> Detection:
    """One Detection (and Decoding, for a decoding method, when ``decode``), device-synchronized."""
    det = method.detect(model, key, prepare=prepare)
    if decode and method.tags.decodes:
        det.details.setdefault("cost_decoded_ber", method.decode(model, key).ber)
    synchronize(model_device(model))
    return det


@dataclass
class DetectionCost:
    """Duration (median of ``rounds`` cold calls) and peak memory of the detection/decoding."""

    seconds: float
    seconds_min: float
    rounds: int
    memory: PeakMemory
    detection: Detection
    decode_seconds: float | None


def detection_cost(method: TraceabilityMethod, model: nn.Module, key: Key, prepare: Prepare | None = None, *,
                   rounds: int = 5, warmup: int = 1, cold: bool = True) -> DetectionCost:
    """Time ``method.detect`` (+ ``decode`` for a decoding method); ``cold``: ``key.cache`` cleared first."""
    times, dec_times = [], []
    det = None
    for i in range(warmup + rounds):
        if cold:
            key.cache.clear()
        t0 = time.perf_counter()
        det = run_detection(method, model, key, prepare, decode=False)
        t1 = time.perf_counter()
        if method.tags.decodes:
            method.decode(model, key)
            synchronize(model_device(model))
        t2 = time.perf_counter()
        if i >= warmup:
            times.append(t1 - t0)
            dec_times.append(t2 - t1)
    if cold:
        key.cache.clear()
    _, mem = peak_memory(lambda: run_detection(method, model, key, prepare), model_device(model))
    return DetectionCost(statistics.median(times), min(times), rounds, mem, det,
                         statistics.median(dec_times) if method.tags.decodes else None)


def insertion(method: TraceabilityMethod, model: nn.Module, *, seed: int,
              config: Mapping[str, Any] | None = None) -> tuple[nn.Module, Key]:
    """A post-training insertion as NNW-TEC §7.2.7 describes it: draw the key (select the
    positions) and write the mark. In place when the method offers ``insert_`` (NCT), else
    ``embed`` (a new model). Device-synchronized."""
    key = method.keygen(model, seed=seed, config=config)
    insert_ = getattr(method, "insert_", None)
    if callable(insert_):
        insert_(model, key)
        marked = model
    else:
        marked = method.embed(model, key)
    synchronize(model_device(marked))
    return marked, key


# ---------------------------------------------------------------------------------------------
# growth of the detection time
# ---------------------------------------------------------------------------------------------
def _nlogn(n: int) -> float:
    return n * math.log(n)


def nlogn_violations(times: Mapping[int, float], slack: float = 3.0) -> list[dict[str, float]]:
    """Pairs n1 < n2 whose time ratio exceeds ``slack * (n2 log n2) / (n1 log n1)`` (empty: no worse than n log n)."""
    ns = sorted(n for n in times if n >= 2)
    out = []
    for i, n1 in enumerate(ns):
        for n2 in ns[i + 1:]:
            ratio = times[n2] / times[n1]
            bound = slack * _nlogn(n2) / _nlogn(n1)
            if ratio > bound:
                out.append({"n1": n1, "n2": n2, "time_ratio": ratio, "bound": bound})
    return out


def loglog_slope(times: Mapping[int, float]) -> float:
    """Least-squares slope of log(time) against log(n): about 1 for n log n at these sizes, 0 while
    a fixed overhead dominates."""
    pts = [(math.log(n), math.log(t)) for n, t in times.items() if n > 0 and t > 0]
    if len(pts) < 2:
        return float("nan")
    mx = statistics.fmean(p[0] for p in pts)
    my = statistics.fmean(p[1] for p in pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sxx if sxx else float("nan")


# ---------------------------------------------------------------------------------------------
# clause records
# ---------------------------------------------------------------------------------------------
@dataclass
class CostResult(ClauseResult):
    """A ClauseResult carrying the method/task/property fields the certificate requires of every
    clause (the plugin fills them from a conformance *case*; cost tests have none)."""

    method: str = ""
    task: str = ""
    property: str = "cost"
    config: dict[str, Any] = field(default_factory=dict)


_CLAUSES = {"NCT": "NNW-TEC §7.2.7 Computational cost", "RTW": "NNW-TEC §7.3.6 Computational cost",
            "TBW": "NNW-TEC §7.4.6 Computational cost"}


def cost_clause(method_name: str) -> str:
    return _CLAUSES.get(method_name, "NNW-NNT Computational cost")


def _published_table23(method_name: str) -> dict[str, Any] | None:
    try:
        from nnw.spec import published_rows

        rows = published_rows("23", method=method_name)
    except Exception:  # noqa: BLE001 - the published figures are context only
        return None
    return rows[0] if rows else None


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "n/a"
    return f"{s * 1e3:.3g} ms" if s < 1 else f"{s:.3g} s"


def _mb(b: int | None) -> str:
    return "n/a" if b is None else f"{b / 2**20:.3g} MiB"


def injection_clause(method: TraceabilityMethod, task_name: str, config: Mapping[str, Any], *,
                     iteration: IterationCost | None, run: InsertionRun, footprint_unmarked: Footprint,
                     footprint_marked: Footprint | None, inference_unmarked: float, inference_marked: float,
                     device: str) -> CostResult:
    """The injection record (Table 23 row + MPAI-NNW's four injection elements); fails only when
    the mark was never found within the budget."""
    fp_m = footprint_marked or footprint_unmarked
    mem_increase = (fp_m.total / footprint_unmarked.total - 1.0) * 100.0
    measured: dict[str, Any] = {
        "batch_iterations_to_insert": run.iterations,
        "increased_batch_iteration_time_percent": None if iteration is None else round(iteration.increase_percent, 2),
        "batch_iteration_seconds": None if iteration is None else {
            "unmarked": iteration.baseline_seconds, "marked": iteration.marked_seconds,
            "unmarked_rounds": iteration.baseline_rounds, "marked_rounds": iteration.marked_rounds,
            "unmarked_round_means": iteration.baseline_means, "marked_round_means": iteration.marked_means,
            "increase_percent_of_means": None if iteration.mean_increase_percent is None
            else round(iteration.mean_increase_percent, 2),
            "unmarked_spread_percent": round(iteration.baseline_spread_percent, 2)},
        "check_every": run.check_every,
        "insertion_budget_iterations": run.budget,
        "insertion_training_seconds": run.seconds,
        "insertion_check_seconds": run.check_seconds,
        "insertion_steps_run": run.steps_run,
        "detection_at_insertion": None if run.detection is None else {
            "present": bool(run.detection.present), "score": float(run.detection.score),
            "threshold": float(run.detection.threshold), "ber": run.ber},
        "memory_footprint_bytes": {"unmarked": footprint_unmarked.as_dict(), "marked": fp_m.as_dict()},
        "memory_footprint_increase_percent": round(mem_increase, 3),
        "inference_seconds": {"unmarked": inference_unmarked, "marked": inference_marked},
        "inference_time_increase_percent": round((inference_marked / inference_unmarked - 1.0) * 100.0, 2),
        "device": device,
    }
    published = _published_table23(method.name)
    if published is not None:
        measured["published_table23"] = published
    title = f"Computational cost of {method.name} injection on {task_name} " \
            f"({', '.join(f'{k}={v}' for k, v in config.items())})"
    common = dict(threshold={"insertion_budget_iterations": run.budget}, table="23", method=method.name,
                  task=task_name, config=dict(config))
    if run.iterations is None:
        last = run.detection
        msg = (f"the mark was not found within the budget of {run.budget} batch iterations (the full training; "
               f"checked every {run.check_every}); last check: "
               + ("no detection possible" if last is None else
                  f"present={last.present}, score {last.score:.4g} vs threshold {last.threshold:.4g}"
                  + ("" if run.ber is None else f", BER {run.ber:.4g}")))
        return CostResult(cost_clause(method.name), title, FAIL, msg, measured, rows=[], **common)
    parts = [f"mark inserted after {run.iterations} batch iterations"
             + (f" (checked every {run.check_every})" if run.iterations and run.check_every > 1 else "")]
    if iteration is not None:
        parts.append(f"batch iteration {_fmt_s(iteration.baseline_seconds)} -> {_fmt_s(iteration.marked_seconds)} "
                     f"({iteration.increase_percent:+.1f}%; unmarked spread {iteration.baseline_spread_percent:.0f}%)")
    parts.append(f"memory {_mb(footprint_unmarked.total)} -> {_mb(fp_m.total)} ({mem_increase:+.2f}%)")
    parts.append(f"inference {_fmt_s(inference_unmarked)} -> {_fmt_s(inference_marked)}")
    if published is not None:
        parts.append(f"[Table 23 published: {published['batch_iterations_to_insert']} iterations, "
                     f"{published['increased_batch_iteration_time_percent']}%]")
    return CostResult(cost_clause(method.name), title, PASS, "; ".join(parts), measured, rows=[], **common)


def detection_clause(method: TraceabilityMethod, task_name: str, config: Mapping[str, Any], *, seconds: float,
                     seconds_min: float | None, rounds: int, cost: DetectionCost, marked: bool,
                     device: str) -> CostResult:
    """The detection/decoding record: total duration and memory footprint (always passes)."""
    measured = {"detection_seconds": seconds, "detection_seconds_min": seconds_min, "rounds": rounds,
                "cold_key": True, "decode_seconds": cost.decode_seconds,
                "memory_peak_bytes": cost.memory.bytes, "memory_source": cost.memory.source,
                "present": bool(cost.detection.present), "model_marked": marked, "device": device}
    title = f"Computational cost of {method.name} detection on {task_name}"
    msg = (f"detection {_fmt_s(seconds)} (median of {rounds}, cold key)"
           + ("" if cost.decode_seconds is None else f", decoding {_fmt_s(cost.decode_seconds)}")
           + f"; peak memory {_mb(cost.memory.bytes)} ({cost.memory.source})"
           + ("" if marked else "; on a model whose mark was never completed"))
    return CostResult(cost_clause(method.name), title, PASS, msg, measured, method=method.name, task=task_name,
                      config=dict(config))


def insertion_time_clause(method_name: str, task_name: str, n: int, total_weights: int, *, seconds: float,
                          seconds_min: float | None, rounds: int, present: bool, device: str) -> CostResult:
    """One point of Figure 5 (NCT insertion time against N); fails only if the mark is not detected."""
    measured = {"N": n, "insertion_seconds": seconds, "insertion_seconds_min": seconds_min, "rounds": rounds,
                "weights": total_weights, "share_of_weights": n / total_weights, "detected": present,
                "device": device}
    title = f"{method_name} insertion time against N (Figure 5): N={n} on {task_name}"
    if not present:
        return CostResult(cost_clause(method_name), title, FAIL, f"N={n}: the inserted mark is not detected",
                          measured, table="F5", method=method_name, task=task_name, config={"N": n})
    return CostResult(cost_clause(method_name), title, PASS,
                      f"N={n}: insertion {_fmt_s(seconds)} (median of {rounds}; key drawn + substitution)",
                      measured, table="F5", method=method_name, task=task_name, config={"N": n})


def complexity_clause(method_name: str, task_name: str, times: Mapping[int, float], *, slack: float,
                      device: str) -> CostResult:
    """§7.2.7 "time complexity O(n log n)": fails when a pair of sizes grows faster than the slack allows."""
    violations = nlogn_violations(times, slack)
    slope = loglog_slope(times)
    ns = sorted(times)
    rows = [{"n": n, "detection_seconds": times[n]} for n in ns]
    measured = {"detection_seconds": {str(n): times[n] for n in ns}, "loglog_slope": slope,
                "violations": violations, "device": device}
    title = f"{method_name} detection time against n: no worse than O(n log n) (§7.2.7) on {task_name}"
    threshold = {"max_time_ratio": f"{slack} * (n2 log n2) / (n1 log n1)"}
    pts = ", ".join(f"n={n}: {_fmt_s(times[n])}" for n in ns)
    if violations:
        v = max(violations, key=lambda d: d["time_ratio"] / d["bound"])
        return CostResult(cost_clause(method_name), title, FAIL,
                          f"detection time grows faster than n log n: n {v['n1']} -> {v['n2']} took "
                          f"{v['time_ratio']:.3g}x (bound {v['bound']:.3g}x); {pts}", measured, threshold, rows,
                          method=method_name, task=task_name)
    return CostResult(cost_clause(method_name), title, PASS,
                      f"{pts}; log-log slope {slope:.2f}; every ratio within {slack}x n log n", measured, threshold,
                      rows, method=method_name, task=task_name)
