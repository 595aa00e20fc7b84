"""Knowledge distillation (MPAI-NNW V1 robustness procedure; MPAI reference software: KL divergence
with temperature T, loss scaled by T^2).

A student of the same architecture, freshly initialized, is trained for E epochs on the task's
training inputs to match the (marked) teacher's outputs — the attacker uses no labels and no key.
Classification and segmentation: KL(softmax(t/T) || softmax(s/T)) * T^2 (per pixel for
segmentation); up-sampling and generation: L1 distance to the teacher's output (T unused).
"""
from __future__ import annotations

import hashlib
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from nnw.modifications.base import Modification, ModificationContext, check_int, check_real, register


class _DistillationLoss:
    #: per-sample teacher outputs are remembered up to this many values per sample (class scores,
    #: not segmentation maps): the same input gives the same output in every epoch, so the teacher
    #: runs once per training image instead of once per image and epoch
    MEMO_MAX_VALUES = 4096

    def __init__(self, teacher: nn.Module, kind: str, T: float):
        self.teacher, self.kind, self.T = teacher, kind, T
        self._memo: dict[bytes, torch.Tensor] | None = {}

    def _teacher_outputs(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            if self._memo is None or x.device.type != "cpu":
                return self.teacher(x).float()
            keys = [hashlib.blake2b(row.numpy().tobytes(), digest_size=16).digest() for row in x.detach().contiguous()]
            missing = [i for i, k in enumerate(keys) if k not in self._memo]
            if missing:
                t = self.teacher(x if len(missing) == len(keys) else x[missing]).float()
                if t[0].numel() > self.MEMO_MAX_VALUES:
                    self._memo = None
                    return t if len(missing) == len(keys) else self.teacher(x).float()
                for i, row in zip(missing, t):
                    self._memo[keys[i]] = row.clone()
            return torch.stack([self._memo[k] for k in keys])

    def __call__(self, out, y, x):
        t = self._teacher_outputs(x)
        out = out.float()
        if self.kind in ("classification", "segmentation"):
            T = self.T
            kl = F.kl_div(F.log_softmax(out / T, dim=1), F.log_softmax(t / T, dim=1), log_target=True, reduction="none")
            return kl.sum(1).mean() * T * T  # per sample (per pixel for segmentation), averaged
        return F.l1_loss(out, t)


class _StudentTask:
    """The task seen by the student: same data and recipe, the teacher's outputs as targets."""

    def __init__(self, task, teacher: nn.Module, T: float):
        self._task, self._loss = task, _DistillationLoss(teacher, task.kind, T)

    def __getattr__(self, name):
        return getattr(self._task, name)

    def make_loss(self, device):
        return self._loss


@register
class Distillation(Modification):
    """``distillation(E=...,T=...)``: a same-architecture student trained E epochs on the teacher's outputs."""

    family: ClassVar[str] = "distillation"
    needs_training: ClassVar[bool] = True
    fresh_model: ClassVar[bool] = True
    defaults = {"T": 4.0}

    def __init__(self, E: int, T: float = 4.0) -> None:
        super().__init__({"E": check_int("E", E, low=1, high=1000, what="student epochs"),
                          "T": check_real("T", T, low=1e-3, high=1e3, what="temperature")})

    def _modify(self, model: nn.Module, *, seed: int, context: ModificationContext | None) -> nn.Module | None:
        task = context.task
        teacher = model.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        student = task.build_model(20_000 + seed).to(context.device)
        context.train(student, _StudentTask(task, teacher, self._params["T"]), epochs=self._params["E"],
                      seed=20_000 + seed, device=context.device)
        return student


__all__ = ["Distillation"]
