"""The in-memory dataset type shared by every loader of :mod:`nnw.data`.

NNW-TEC §6.1 evaluates each technology on a task's dataset; the training loop keeps
the whole set resident on its device, so loaders return tensors, not iterators:
images as ``uint8`` N x C x H x W, class labels as ``int64`` N, segmentation maps as
``int64`` N x H x W (255 = ignore).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

__all__ = ["IGNORE_INDEX", "ImageSet"]

IGNORE_INDEX = 255
"""Label value excluded from segmentation losses and metrics (Cityscapes convention)."""


@dataclass(frozen=True)
class ImageSet:
    """A dataset held in memory: inputs ``x``, targets ``y`` (same first dimension), ``meta``.

    ``meta`` carries dataset facts such as ``"name"``, ``"classes"``, ``"num_classes"``.
    """

    x: Tensor
    y: Tensor
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.x, Tensor) or not isinstance(self.y, Tensor):
            raise TypeError(
                f"ImageSet expects tensors x and y, received {type(self.x).__name__} "
                f"and {type(self.y).__name__}"
            )
        if self.x.dim() < 1 or self.y.dim() < 1 or self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                "ImageSet expects x and y with the same first dimension, received "
                f"x {tuple(self.x.shape)} and y {tuple(self.y.shape)}"
            )

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def device(self) -> torch.device:
        return self.x.device

    def to(self, device: torch.device | str) -> ImageSet:
        """The same set with ``x`` and ``y`` on ``device`` (``meta`` is shared)."""
        return replace(self, x=self.x.to(device), y=self.y.to(device), meta=dict(self.meta))

    def select(self, index: Tensor | list[int] | slice) -> ImageSet:
        """The items at ``index`` (a slice, a list of positions or a 1-D index tensor)."""
        if isinstance(index, list):
            index = torch.as_tensor(index, dtype=torch.long)
        if isinstance(index, Tensor):
            index = index.to(self.x.device)
        return replace(self, x=self.x[index], y=self.y[index], meta=dict(self.meta))

    def subset(self, n: int, seed: int | None = None) -> ImageSet:
        """``n`` items: the first ``n`` or, given a ``seed``, ``n`` drawn without replacement."""
        if not 0 <= n <= len(self):
            raise ValueError(f"subset size must be in [0, {len(self)}], received {n}")
        if seed is None:
            return self.select(slice(0, n))
        generator = torch.Generator().manual_seed(seed)
        return self.select(torch.randperm(len(self), generator=generator)[:n].sort().values)
