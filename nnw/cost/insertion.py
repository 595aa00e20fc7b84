"""Insertion: batch iterations of training until the mark is found (Table 23, MPAI-NNW V1's
"epochs / batch iterations to insert"), and a post-training insertion as NNW-TEC §7.2.7 times it
(Figure 5).

on the task's full recipe (the training the zoo gives every marked model, with the same seed)
and checks the mark every ``check_every`` batch iterations and at the start of every epoch
(before the first iteration, and where an insertion at epoch α happens): inserted =
``nnw.tracker.detect(...).present`` (the Tracker's rule) and, for a decoding method,
``decode(...).ber == 0``. The run stops
at the first success; the count is the number of batch iterations done then (a multiple of
``check_every`` or an epoch boundary: the true first iteration lies in ``(count − check_every,
count]``). NCT gives 0 by design (α = 0: the mark is written by substitution before the first
iteration). The budget is the full training: a mark not found by its end was never inserted.
Check time is excluded from the training time reported.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nnw import tracker
from nnw.cost.common import _Stop, synchronize
from nnw.hooks import TrainContext, TrainingHook
from nnw.layers import model_device
from nnw.methods.base import Detection, Key, Prepare, TraceabilityMethod
from nnw.training import train


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
            det = tracker.detect(self.method, model, key, prepare=self.prepare)
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
        det = tracker.detect(method, marked, key, prepare=prepare)
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

