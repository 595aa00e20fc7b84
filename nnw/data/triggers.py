"""TBW trigger sets: abstract images with randomly assigned labels (NNW-TEC §7.4).

NNW-TEC §7.4.2 (after Adi et al. 2018, [9]): the trigger dataset is "smaller and
composed of data that are unrelated to the main dataset", and the network is trained
to give it labels "that cannot be logically connected to the initial task (i.e.
random label association)". The TBW-Key (§7.4.1) is the set of trigger images and
their labels. The images here are abstract: a smooth random colour field with random
coloured geometric shapes (disc, rectangle, triangle, stripes) drawn over it; labels
are drawn uniformly from the classes. Everything is a function of ``seed``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from nnw.data.imageset import ImageSet

__all__ = ["make_trigger_set"]

_SHAPES = ("disc", "rectangle", "triangle", "stripes")


def _smooth_field(rng: np.random.Generator, channels: int, height: int, width: int) -> np.ndarray:
    """A random low-frequency colour field in [0, 1], bicubically upsampled from a coarse grid."""
    grid = int(rng.integers(2, 7))
    coarse = torch.from_numpy(rng.random((1, channels, grid, grid), dtype=np.float32))
    field = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)[0]
    low, high = field.amin(dim=(1, 2), keepdim=True), field.amax(dim=(1, 2), keepdim=True)
    span = float(rng.uniform(0.3, 1.0))
    return ((field - low) / (high - low + 1e-6) * span + (1 - span) * rng.random()).numpy()


def _shape_mask(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """A boolean mask of one random shape over the unit square (``rows``/``cols`` in [0, 1])."""
    kind = _SHAPES[int(rng.integers(len(_SHAPES)))]
    cy, cx = rng.uniform(0.1, 0.9, size=2)
    if kind == "disc":
        radius = rng.uniform(0.08, 0.35)
        return (rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2
    if kind == "rectangle":
        half_h, half_w = rng.uniform(0.05, 0.35, size=2)
        return (np.abs(rows - cy) <= half_h) & (np.abs(cols - cx) <= half_w)
    if kind == "triangle":
        pts = rng.uniform(0.0, 1.0, size=(3, 2))
        signs = []
        for i in range(3):
            (y0, x0), (y1, x1) = pts[i], pts[(i + 1) % 3]
            signs.append((x1 - x0) * (rows - y0) - (y1 - y0) * (cols - x0) >= 0)
        return (signs[0] & signs[1] & signs[2]) | (~signs[0] & ~signs[1] & ~signs[2])
    angle = rng.uniform(0.0, np.pi)
    period = rng.uniform(0.08, 0.3)
    phase = rows * np.cos(angle) + cols * np.sin(angle)
    return np.mod(phase, period) < period / 2


def make_trigger_set(
    n: int = 100,
    num_classes: int = 10,
    shape: tuple[int, int, int] = (3, 32, 32),
    seed: int = 0,
) -> ImageSet:
    """The TBW-Key of NNW-TEC §7.4.1: ``n`` abstract uint8 images of ``shape`` with uniform random labels.

    The same ``seed`` gives identical images and labels; labels are ``int64`` in
    ``[0, num_classes)``.
    """
    if n < 1:
        raise ValueError(f"trigger set size n must be >= 1, received {n}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, received {num_classes}")
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape must be (C, H, W) with positive sizes, received {shape!r}")
    channels, height, width = (int(s) for s in shape)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7B3]))
    rows, cols = np.meshgrid(
        (np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width, indexing="ij"
    )
    images = np.empty((n, channels, height, width), dtype=np.float32)
    for i in range(n):
        image = _smooth_field(rng, channels, height, width)
        for _ in range(int(rng.integers(1, 5))):
            mask = _shape_mask(rng, rows, cols)
            colour = rng.random((channels, 1, 1), dtype=np.float32)
            alpha = float(rng.uniform(0.6, 1.0))
            image = np.where(mask, (1 - alpha) * image + alpha * colour, image)
        images[i] = image
    x = torch.from_numpy(np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8))
    y = torch.from_numpy(rng.integers(0, num_classes, size=n, dtype=np.int64))
    meta = {
        "name": "tbw_trigger_set",
        "clause": "NNW-TEC §7.4",
        "num_classes": num_classes,
        "seed": seed,
    }
    return ImageSet(x=x, y=y, meta=meta)
