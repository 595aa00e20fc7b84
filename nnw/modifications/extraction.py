"""Model extraction without the training data: an attack beyond the standard (adversarial stress section).

The attacker queries the marked model on *out-of-distribution* inputs it can make itself and
distils a fresh student of the same architecture from the answers (Tramèr et al., USENIX Security
2016; Orekondy et al., "Knockoff Nets", CVPR 2019; the KL/temperature loss of Hinton et al. 2015,
as :mod:`nnw.modifications.distillation`). No training image, label or key is used. Query sources:

- ``noise``: i.i.d. uniform pixels;
- ``dead_leaves``: the dead-leaves model (Lee, Mumford & Huang, IJCV 2001) — random coloured discs
  with power-law radii occluding each other, the procedural images Baradad et al. ("Learning to See
  by Looking at Noise", NeurIPS 2021) train vision models on.

``n`` query images (a function of the seed), ``E`` epochs of the task's training loop.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import nn

from nnw.data.imageset import ImageSet
from nnw.modifications.base import Modification, ModificationContext, check_choice, check_int, check_real, register
from nnw.modifications.distillation import _DistillationLoss

SOURCES = ("dead_leaves", "noise")


def noise_images(n: int, shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    """``n`` uint8 images of i.i.d. uniform pixels."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x401]))
    return torch.from_numpy(rng.integers(0, 256, size=(n, *shape), dtype=np.uint8))


def dead_leaves(n: int, shape: tuple[int, int, int], seed: int, discs: int = 64, r_min: float = 1.0,
                r_max: float | None = None) -> torch.Tensor:
    """``n`` uint8 dead-leaves images: ``discs`` discs painted in turn (later ones occlude earlier ones),
    uniform centres and colours, radii with density ∝ r⁻³ on [r_min, r_max] (Lee et al. 2001)."""
    c, h, w = shape
    r_max = r_max if r_max is not None else max(h, w) / 2
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xDEAD]))
    img = np.broadcast_to(rng.random((n, c, 1, 1), dtype=np.float32), (n, c, h, w)).copy()
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float32) + 0.5, np.arange(w, dtype=np.float32) + 0.5, indexing="ij")
    a, b = r_min ** -2, r_max ** -2
    for _ in range(discs):
        u = rng.random(n, dtype=np.float32)
        r = (a - u * (a - b)) ** -0.5          # inverse CDF of p(r) ∝ r^-3 on [r_min, r_max]
        cy = rng.random(n, dtype=np.float32) * h
        cx = rng.random(n, dtype=np.float32) * w
        colour = rng.random((n, c), dtype=np.float32)
        inside = (yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2 <= (r ** 2)[:, None, None]
        np.copyto(img, colour[:, :, None, None], where=inside[:, None])
    return torch.from_numpy(np.round(img * 255.0).astype(np.uint8))


class _QueryTask:
    """The task seen by the student: the attacker's query images, the teacher's answers as targets."""

    def __init__(self, task, queries: ImageSet, teacher: nn.Module, T: float):
        self._task, self.train = task, queries
        self._loss = _DistillationLoss(teacher, task.kind, T)

    def __getattr__(self, name):
        return getattr(self._task, name)

    def make_loss(self, device):
        return self._loss


@register
class Extraction(Modification):
    """``extraction(E=...,source=...)``: a fresh student distilled E epochs from the marked model's
    answers on n out-of-distribution queries (no training data)."""

    family: ClassVar[str] = "extraction"
    needs_training: ClassVar[bool] = True
    fresh_model: ClassVar[bool] = True
    defaults = {"source": "dead_leaves", "n": 4000, "T": 4.0}

    def __init__(self, E: int, source: str = "dead_leaves", n: int = 4000, T: float = 4.0) -> None:
        super().__init__({"E": check_int("E", E, low=1, high=1000, what="student epochs"),
                          "source": check_choice("source", source, SOURCES),
                          "n": check_int("n", n, low=1, high=10**7, what="query images"),
                          "T": check_real("T", T, low=1e-3, high=1e3, what="temperature")})

    def queries(self, shape: tuple[int, int, int], seed: int) -> torch.Tensor:
        """The attacker's uint8 query images for ``seed``."""
        make = dead_leaves if self._params["source"] == "dead_leaves" else noise_images
        return make(self._params["n"], shape, 60_000 + seed)

    def _modify(self, model: nn.Module, *, seed: int, context: ModificationContext | None) -> nn.Module | None:
        task = context.task
        if task.kind not in ("classification", "segmentation"):
            raise ValueError(f"{self.name}: extraction from soft labels needs a classification or segmentation "
                             f"task, got {task.kind!r}")
        teacher = model.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        x = self.queries(tuple(task.train.x.shape[1:]), seed)
        queries = ImageSet(x, torch.zeros(len(x), dtype=torch.int64), {"name": f"{self._params['source']} queries"})
        student = task.build_model(40_000 + seed).to(context.device)
        context.train(student, _QueryTask(task, queries, teacher, self._params["T"]), epochs=self._params["E"],
                      seed=40_000 + seed, device=context.device)
        return student


__all__ = ["Extraction", "SOURCES", "dead_leaves", "noise_images"]
