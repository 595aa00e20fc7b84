"""Time: batch iterations of training, inference, detection/decoding, and the growth of the
detection time with n (NNW-TEC §7.2.7, §7.3.6, §7.4.6, Table 23; MPAI-NNW V1 procedure 3).

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

elsewhere the growth of ``ru_maxrss``) — context only: memory the allocator recycles is not seen.

**Detection cost.** :func:`detection_cost` times ``method.detect`` (and ``decode`` for a decoding
method) from a *cold* key — ``Key.cache`` (runtime-only derived data, e.g. NCT's de-obfuscated
indices and gather plan) cleared before each call, as for a verifier that has just loaded the
"""
from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nnw.cost.common import _resolve_hooks, _Stop, _with_train_set, synchronize
from nnw.cost.memory import PeakMemory, peak_memory
from nnw.hooks import TrainContext, TrainingHook
from nnw.layers import model_device
from nnw.methods.base import Detection, Key, Prepare, TraceabilityMethod
from nnw.training import train


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

