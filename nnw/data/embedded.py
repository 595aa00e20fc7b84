"""Embedded offline datasets built from the photographs that scikit-image ships.

NNW-TEC §6.1 evaluates on CIFAR10, Cityscapes and Div2K. Where those are not on the
machine, these sets stand in for them with the same tensor conventions, built
deterministically from a seed out of real pixels: the photos bundled in the
``skimage.data`` package directory (loaded without any download; files that
scikit-image fetches on demand are not used).

Leakage rule: every set draws its train items from the left 75% of each source
photo and its test items from the right 25%. Resampled crops keep 16 pixels clear on
each side of the boundary so interpolation never reads across it (``meta["boxes"]``
records each item's source rectangle so the rule can be checked); street-scene
textures are sliced from area-averaged pyramid levels and keep two level pixels clear.

One module over 400 lines on purpose: the four embedded datasets share the photo loading,
cropping and seeding code that makes them deterministic.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from nnw.data.cityscapes import TRAINID_NAMES, colorize_trainids
from nnw.data.imageset import IGNORE_INDEX, ImageSet

__all__ = [
    "CLASSIFICATION_SOURCES",
    "SCENE_CLASSES",
    "TRAIN_FRACTION",
    "embedded_classification",
    "embedded_generation",
    "embedded_segmentation",
    "embedded_superres",
    "source_photo",
    "split_region",
    "tile_test_cells",
]

TRAIN_FRACTION = 0.75
"""Share of each source photo's width (from the left) reserved for train items."""

_PYRAMID_LEVELS = 4
_GAP = 2**_PYRAMID_LEVELS  # pixels left unused each side of the train/test boundary (> resampling reach)


def _skimage(name: str, index: int | None = None) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        image = getattr(skimage.data, name)()
        return image[index] if index is not None else image

    return load


# Photos stored in scikit-image's own package directory (checked to load offline with
# scikit-image 0.26; lily, skin, eagle, kidney, brain ... need a download and are absent).
_PHOTOS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "coffee": _skimage("coffee"),
    "chelsea": _skimage("chelsea"),
    "rocket": _skimage("rocket"),
    "hubble_deep_field": _skimage("hubble_deep_field"),
    "immunohistochemistry": _skimage("immunohistochemistry"),
    "motorcycle": _skimage("stereo_motorcycle", 0),
    "camera": _skimage("camera"),
    "brick": _skimage("brick"),
    "grass": _skimage("grass"),
    "gravel": _skimage("gravel"),
    "coins": _skimage("coins"),
    "colorwheel": _skimage("colorwheel"),
    "retina": _skimage("retina"),
    "moon": _skimage("moon"),
    "clock": _skimage("clock"),
    "cell": _skimage("cell"),
    "page": _skimage("page"),
    "text": _skimage("text"),
}

CLASSIFICATION_SOURCES: tuple[str, ...] = tuple(_PHOTOS)
"""One class per photo, in this order; ``num_classes`` takes the first ones."""


@functools.lru_cache(maxsize=None)
def source_photo(name: str) -> Tensor:
    """The bundled photo ``name`` as a float32 3 x H x W tensor in [0, 255] (cached; do not modify).

    Greyscale photos are replicated to three channels; an alpha channel is dropped.
    """
    if name not in _PHOTOS:
        raise KeyError(f"unknown embedded photo {name!r}; expected one of {sorted(_PHOTOS)}")
    try:
        image = np.asarray(_PHOTOS[name]())
    except Exception as error:  # e.g. a scikit-image build that does not bundle the file
        raise RuntimeError(
            f"embedded photo {name!r} could not be loaded from scikit-image's bundled data "
            f"({type(error).__name__}: {error}); the embedded datasets need it offline"
        ) from error
    if image.dtype != np.uint8:
        raise TypeError(f"embedded photo {name!r} should be uint8, received {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    tensor = torch.from_numpy(np.ascontiguousarray(image[:, :, :3])).permute(2, 0, 1)
    return tensor.to(torch.float32).contiguous()


def split_region(width: int, split: str, gap: int = _GAP) -> tuple[int, int]:
    """Column range ``[lo, hi)`` of a source photo of ``width`` usable by ``split``.

    ``gap`` columns stay unused on each side of the boundary: enough for resampling
    (the default) or 2 for integer slicing of an area-averaged pyramid level.
    """
    boundary = int(round(width * TRAIN_FRACTION))
    if split == "train":
        return 0, boundary - gap
    if split == "test":
        return boundary + gap, width
    raise ValueError(f"split must be 'train' or 'test', received {split!r}")


def _rng(seed: int, stream: str) -> np.random.Generator:
    """An independent generator per (seed, dataset/split), so one split never shifts another."""
    return np.random.default_rng(np.random.SeedSequence([seed, *stream.encode()]))


def _sample_boxes(
    rng: np.random.Generator,
    height: int,
    region: tuple[int, int],
    count: int,
    side_range: tuple[float, float],
) -> np.ndarray:
    """``count`` square boxes (x1, y1, x2, y2) inside rows [0, height) and columns ``region``."""
    lo, hi = region
    max_side = min(side_range[1], hi - lo, height)
    min_side = min(side_range[0], max_side)
    sides = np.exp(rng.uniform(np.log(min_side), np.log(max_side), size=count))
    x1 = lo + rng.uniform(0.0, 1.0, size=count) * (hi - lo - sides)
    y1 = rng.uniform(0.0, 1.0, size=count) * (height - sides)
    return np.stack([x1, y1, x1 + sides, y1 + sides], axis=1)


def tile_test_cells(height: int, width: int, cell: int, gap: int = _GAP) -> np.ndarray:
    """Test cells (x1, y1, x2, y2) of the ``tiles`` layout of a ``height`` x ``width`` photo.

    The photo is tiled by squares of side ``2 * (cell + gap)``; the top-left ``cell`` x ``cell``
    corner of each tile is test, the rest is train: an L whose arms, once ``gap`` pixels are kept
    clear of the test cells on both sides, are ``cell`` pixels wide. Both splits cover the whole
    photo (about 20 % test). Cells are clipped to the photo.
    """
    period = 2 * (cell + gap)
    ys, xs = np.arange(0, height, period), np.arange(0, width, period)
    y1, x1 = np.meshgrid(ys, xs, indexing="ij")
    x1, y1 = x1.ravel(), y1.ravel()
    return np.stack([x1, y1, np.minimum(x1 + cell, width), np.minimum(y1 + cell, height)], axis=1).astype(np.float64)


def _sample_tile_boxes(
    rng: np.random.Generator,
    height: int,
    width: int,
    split: str,
    count: int,
    side_range: tuple[float, float],
    cell: int,
    gap: int = _GAP,
) -> np.ndarray:
    """``count`` square boxes of the ``tiles`` layout: test boxes inside a test cell shrunk by ``gap``,
    train boxes clear of every test cell grown by ``gap`` (rejection sampling, deterministic in ``rng``)."""
    cells = tile_test_cells(height, width, cell, gap)
    sides = np.exp(rng.uniform(np.log(side_range[0]), np.log(side_range[1]), size=count))
    boxes = np.empty((count, 4), dtype=np.float64)
    if split == "test":
        inner = cells + np.array([gap, gap, -gap, -gap], dtype=np.float64)
        for i, side in enumerate(sides):
            fits = np.flatnonzero((inner[:, 2] - inner[:, 0] >= side) & (inner[:, 3] - inner[:, 1] >= side))
            if fits.size == 0:
                raise ValueError(f"a {side:.0f}-pixel crop fits in no test cell of a {height} x {width} photo")
            c = inner[fits[int(rng.integers(fits.size))]]
            x1 = c[0] + rng.uniform() * (c[2] - c[0] - side)
            y1 = c[1] + rng.uniform() * (c[3] - c[1] - side)
            boxes[i] = (x1, y1, x1 + side, y1 + side)
        return boxes
    if split != "train":
        raise ValueError(f"split must be 'train' or 'test', received {split!r}")
    grown = cells + np.array([-gap, -gap, gap, gap], dtype=np.float64)
    todo = np.arange(count)
    for _ in range(10_000):
        if todo.size == 0:
            return boxes
        side = sides[todo]
        x1 = rng.uniform(size=todo.size) * (width - side)
        y1 = rng.uniform(size=todo.size) * (height - side)
        cand = np.stack([x1, y1, x1 + side, y1 + side], axis=1)
        hit = ((cand[:, None, 0] < grown[None, :, 2]) & (grown[None, :, 0] < cand[:, None, 2])
               & (cand[:, None, 1] < grown[None, :, 3]) & (grown[None, :, 1] < cand[:, None, 3])).any(1)
        boxes[todo[~hit]] = cand[~hit]
        todo = todo[hit]
    raise ValueError(f"train crops of up to {side_range[1]:.0f} pixels do not fit between the test cells "
                     f"of a {height} x {width} photo")


@functools.lru_cache(maxsize=None)
def _pyramid(name: str) -> tuple[Tensor, ...]:
    """``source_photo(name)`` area-averaged by 1, 2, 4 and 8 (cached; do not modify)."""
    levels = [source_photo(name)]
    for _ in range(_PYRAMID_LEVELS - 1):
        levels.append(F.avg_pool2d(levels[-1][None], 2, ceil_mode=True)[0])
    return tuple(levels)


def _crop_resize(name: str, boxes: np.ndarray, size: int) -> Tensor:
    """Crops of photo ``name`` at ``boxes`` (x1, y1, x2, y2) resampled to ``size`` x ``size``.

    One bilinear sample per output pixel, taken from the pyramid level whose pixel
    pitch is closest to the crop's (so shrinking never skips more than ~1.4 pixels).
    """
    boxes_t = torch.from_numpy(boxes).float()
    pitch = (boxes_t[:, 2] - boxes_t[:, 0]) / size
    level_of = torch.log2(pitch).round().clamp(0, _PYRAMID_LEVELS - 1).long()
    centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    out = torch.empty((len(boxes), 3, size, size), dtype=torch.float32)
    for level, image in enumerate(_pyramid(name)):
        index = torch.nonzero(level_of == level).flatten()
        if index.numel() == 0:
            continue
        b = boxes_t[index] / 2**level
        height, width = image.shape[1:]
        gx = (b[:, 0:1] + centres * (b[:, 2:3] - b[:, 0:1])) / width * 2 - 1
        gy = (b[:, 1:2] + centres * (b[:, 3:4] - b[:, 1:2])) / height * 2 - 1
        grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
        sampled = F.grid_sample(
            image[None], grid.view(1, -1, size, 2), mode="bilinear", padding_mode="border", align_corners=False
        )
        out[index] = sampled.view(3, index.numel(), size, size).transpose(0, 1)
    return out


def _colour_jitter(x: Tensor, rng: np.random.Generator, strength: float = 1.0) -> Tensor:
    """Random saturation, contrast, brightness, per-channel gain and pixel noise (x in [0, 255]).

    The four colour operations are linear, so they are applied as one per-item 3 x 3
    matrix plus offset: ``gain * brightness * (mean + contrast * (sat(x) - mean))``,
    where ``sat(x) = grey + saturation * (x - grey)`` keeps the mean unchanged.
    """
    n, channels = x.shape[:2]

    def factor(spread: float, count: int = 1) -> Tensor:
        values = rng.uniform(1 - spread * strength, 1 + spread * strength, size=(n, count))
        return torch.from_numpy(values.astype(np.float32))

    saturation, contrast, brightness = factor(0.35), factor(0.3), factor(0.3)
    gain = factor(0.1, channels) * brightness  # n x C
    mixing = saturation[:, :, None] * torch.eye(channels) + (1 - saturation[:, :, None]) / channels
    matrix = gain[:, :, None] * contrast[:, :, None] * mixing  # n x C x C
    # numpy's single-threaded float64 mean: the same bits whatever torch's thread count
    mean = torch.from_numpy(x.numpy().mean(axis=(1, 2, 3), dtype=np.float64).astype(np.float32))
    offset = gain * (1 - contrast) * mean[:, None]  # n x C
    out = torch.baddbmm(offset[:, :, None], matrix, x.reshape(n, channels, x.shape[2] * x.shape[3])).view_as(x)
    noise_sigma = torch.from_numpy(rng.uniform(0, 6 * strength, size=(n, 1, 1, 1)).astype(np.float32))
    generator = torch.Generator().manual_seed(int(rng.integers(2**63)))
    return out.add_(torch.randn(out.shape, generator=generator).mul_(noise_sigma))


def _to_uint8(x: Tensor) -> Tensor:
    return x.round().clamp_(0, 255).to(torch.uint8)


def _hflip_some(x: Tensor, rng: np.random.Generator) -> Tensor:
    """Flip a random half of the items left-right, in place."""
    flip = torch.from_numpy(np.flatnonzero(rng.random(x.shape[0]) < 0.5))
    x[flip] = x[flip].flip(-1)
    return x


def _classification_split(
    sources: tuple[str, ...],
    n: int,
    size: int,
    split: str,
    rng: np.random.Generator,
    scale_range: tuple[float, float] = (0.75, 3.0),
    jitter: float = 1.0,
    layout: str = "columns",
) -> ImageSet:
    labels = rng.permutation(np.arange(n) % len(sources))
    side_range = (scale_range[0] * size, scale_range[1] * size)
    cell = int(math.ceil(side_range[1])) + 2 * _GAP  # tiles: a test cell holds the largest crop
    x = torch.empty((n, 3, size, size), dtype=torch.float32)
    boxes = np.empty((n, 4), dtype=np.float64)
    for label, name in enumerate(sources):
        index = np.flatnonzero(labels == label)
        if index.size == 0:
            continue
        photo = source_photo(name)
        if layout == "tiles":
            chosen = _sample_tile_boxes(rng, photo.shape[1], photo.shape[2], split, index.size, side_range, cell)
        else:
            region = split_region(photo.shape[2], split)
            chosen = _sample_boxes(rng, photo.shape[1], region, index.size, side_range)
        x[torch.from_numpy(index)] = _crop_resize(name, chosen, size)
        boxes[index] = chosen
    x = _to_uint8(_colour_jitter(_hflip_some(x, rng), rng, jitter))
    meta = {
        "name": "embedded_classification",
        "split": split,
        "classes": list(sources),
        "num_classes": len(sources),
        "boxes": torch.from_numpy(boxes),
        "sources": [sources[i] for i in labels],
        "layout": layout,
    }
    if layout == "tiles":
        meta["test_cell"] = cell
    return ImageSet(x=x, y=torch.from_numpy(labels.astype(np.int64)), meta=meta)


def embedded_classification(
    seed: int = 0,
    n_train: int = 5000,
    n_test: int = 1000,
    size: int = 32,
    num_classes: int = 10,
    classes: Sequence[str] | None = None,
    scale_range: tuple[float, float] = (0.75, 3.0),
    jitter: float = 1.0,
    layout: str = "columns",
) -> tuple[ImageSet, ImageSet]:
    """An offline CIFAR10 stand-in (NNW-TEC §6.1 image classification): one class per bundled photo.

    Items are ``size`` x ``size`` uint8 patches cropped at random positions and scales
    (side ``scale_range`` x ``size``, default 0.75..3), randomly flipped and colour-jittered
    (``jitter`` scales the colour jitter and noise). Layout ``columns``: train patches come
    from the left 75% of each photo, test patches from the right 25%. Layout ``tiles``
    (:func:`tile_test_cells`): test patches from a quarter of every tile of the photo, train
    patches from the rest, so both splits see the whole photo and a test set measures the
    class, not one region of it. ``classes`` names the photos (default: the first
    ``num_classes`` of :data:`CLASSIFICATION_SOURCES`).
    """
    if not 2 <= num_classes <= len(CLASSIFICATION_SOURCES):
        raise ValueError(
            f"num_classes must be in [2, {len(CLASSIFICATION_SOURCES)}] (one bundled photo per "
            f"class), received {num_classes}"
        )
    if n_train < 0 or n_test < 0 or size < 4:
        raise ValueError(f"expected n_train, n_test >= 0 and size >= 4, received {n_train}, {n_test}, {size}")
    if classes is not None:
        sources = tuple(classes)
        unknown = sorted(set(sources) - set(CLASSIFICATION_SOURCES))
        if unknown or len(set(sources)) != len(sources) or len(sources) < 2:
            raise ValueError(f"classes must be >= 2 distinct names of {CLASSIFICATION_SOURCES}, received {list(sources)}")
    else:
        sources = CLASSIFICATION_SOURCES[:num_classes]
    lo, hi = (float(v) for v in scale_range)
    if not 0 < lo <= hi:
        raise ValueError(f"scale_range must be 0 < lo <= hi, received {scale_range}")
    if layout not in ("columns", "tiles"):
        raise ValueError(f"layout must be 'columns' or 'tiles', received {layout!r}")
    args = ((lo, hi), float(jitter), layout)
    train = _classification_split(sources, n_train, size, "train", _rng(seed, "classification/train"), *args)
    test = _classification_split(sources, n_test, size, "test", _rng(seed, "classification/test"), *args)
    return train, test


def _superres_split(
    sources: tuple[str, ...], n: int, hr_size: int, scale: int, split: str, rng: np.random.Generator
) -> ImageSet:
    choice = rng.integers(0, len(sources), size=n)
    hr = torch.empty((n, 3, hr_size, hr_size), dtype=torch.float32)
    boxes = np.empty((n, 4), dtype=np.float64)
    for k, name in enumerate(sources):
        index = np.flatnonzero(choice == k)
        photo = source_photo(name)
        lo, hi = split_region(photo.shape[2], split)
        if hi - lo < hr_size or photo.shape[1] < hr_size:
            raise ValueError(f"embedded photo {name!r} is too small for {hr_size}-pixel HR patches")
        xs = rng.integers(lo, hi - hr_size + 1, size=index.size)
        ys = rng.integers(0, photo.shape[1] - hr_size + 1, size=index.size)
        for i, x0, y0 in zip(index, xs, ys):
            hr[i] = photo[:, y0 : y0 + hr_size, x0 : x0 + hr_size]
        boxes[index] = np.stack([xs, ys, xs + hr_size, ys + hr_size], axis=1)
    hr = _hflip_some(hr, rng)
    rotate = torch.from_numpy(rng.random(n) < 0.5)
    hr = torch.where(rotate[:, None, None, None], hr.transpose(-1, -2), hr)
    hr_u8 = _to_uint8(hr)
    lr = F.interpolate(hr_u8.float(), scale_factor=1 / scale, mode="bicubic", antialias=True, align_corners=False)
    meta = {
        "name": "embedded_superres",
        "split": split,
        "scale": scale,
        "boxes": torch.from_numpy(boxes),
        "sources": [sources[i] for i in choice],
    }
    return ImageSet(x=_to_uint8(lr), y=hr_u8, meta=meta)


def embedded_superres(
    seed: int = 0,
    n_train: int = 4000,
    n_test: int = 800,
    hr_size: int = 32,
    scale: int = 2,
) -> tuple[ImageSet, ImageSet]:
    """An offline Div2K stand-in (NNW-TEC §6.1 up-sampling): x = LR, y = HR uint8 patch pairs.

    HR patches are native-resolution crops of the bundled photos (random flips and
    transpositions); LR is their antialiased bicubic downscaling by ``scale`` (PIL-like,
    ``torch.nn.functional.interpolate(..., antialias=True)``).
    """
    if scale < 1 or hr_size % scale != 0:
        raise ValueError(f"hr_size must be a multiple of scale, received hr_size={hr_size}, scale={scale}")
    if n_train < 0 or n_test < 0:
        raise ValueError(f"expected n_train, n_test >= 0, received {n_train}, {n_test}")
    sources = CLASSIFICATION_SOURCES[:10]
    train = _superres_split(sources, n_train, hr_size, scale, "train", _rng(seed, "superres/train"))
    test = _superres_split(sources, n_test, hr_size, scale, "test", _rng(seed, "superres/test"))
    return train, test


# --------------------------------------------------------------------------- street scenes
# Cityscapes train IDs (NNW-TEC §6.1 semantic segmentation / pix2pix on Cityscapes).
ROAD, SIDEWALK, BUILDING, POLE, TRAFFIC_SIGN, VEGETATION, TERRAIN, SKY, PERSON, CAR = 0, 1, 2, 5, 7, 8, 9, 10, 11, 13
SCENE_CLASSES: tuple[int, ...] = (ROAD, SIDEWALK, BUILDING, POLE, TRAFFIC_SIGN, VEGETATION, TERRAIN, SKY, PERSON, CAR)
"""Train IDs the street-scene generator draws (a subset of the 19 Cityscapes classes)."""


@dataclass(frozen=True)
class _Style:
    """How one class is rendered: a texture cut from a bundled photo, a base colour, a contrast."""

    photo: str
    level: int  # pyramid level the texture is cut from (area-averaged by 2**level)
    colours: tuple[tuple[int, int, int], ...]  # base colours; empty = use the photo's own colours
    contrast: float  # texture amplitude around the base colour


_STYLES: dict[int, _Style] = {
    SKY: _Style("moon", 2, ((70, 130, 200), (150, 170, 195), (185, 190, 195)), 0.05),
    BUILDING: _Style("brick", 2, ((190, 170, 140), (120, 120, 128), (150, 85, 65), (210, 205, 190)), 0.35),
    ROAD: _Style("gravel", 2, ((90, 90, 96), (105, 100, 100), (75, 78, 85)), 0.15),
    SIDEWALK: _Style("brick", 3, ((175, 150, 160), (160, 160, 150)), 0.25),
    VEGETATION: _Style("grass", 1, ((55, 95, 40), (70, 110, 35), (40, 80, 45)), 0.45),
    TERRAIN: _Style("grass", 0, ((150, 160, 90), (165, 150, 95)), 0.25),
    POLE: _Style("gravel", 0, ((135, 135, 140), (95, 95, 100)), 0.08),
    TRAFFIC_SIGN: _Style("camera", 2, ((220, 200, 10), (30, 80, 200), (200, 30, 30)), 0.05),
    PERSON: _Style("astronaut", 1, (), 0.0),
    CAR: _Style("motorcycle", 1, ((0, 40, 160), (170, 20, 20), (30, 30, 30), (200, 200, 205), (20, 110, 60)), 0.3),
}


@functools.lru_cache(maxsize=None)
def _grey_texture(name: str, level: int) -> np.ndarray:
    """Pyramid level ``level`` of photo ``name`` as grey, zero-mean, unit-std float32 H x W (cached)."""
    grey = _pyramid(name)[level].mean(dim=0).numpy()
    return ((grey - grey.mean()) / (grey.std() + 1e-6)).astype(np.float32)


def _texture_coords(
    shape: tuple[int, ...], split: str, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of a random ``size`` x ``size`` tile of a texture of ``shape``.

    The tile is cut from the ``split`` region, flipped left-right half the time, and
    mirrored outwards (symmetric padding) where the region is smaller than ``size``.
    """
    height, width = shape[-2:]
    # Integer slicing of an area-averaged level: 2 level pixels clear of the boundary keep
    # train and test source columns apart even across levels of a width not divisible by 2**level.
    lo, hi = split_region(width, split, gap=2)
    side = min(size, hi - lo, height)
    x0 = int(rng.integers(lo, hi - side + 1))
    y0 = int(rng.integers(0, height - side + 1))
    step = np.arange(size) % (2 * side)
    mirrored = np.where(step < side, step, 2 * side - 1 - step)
    cols = side - 1 - mirrored if rng.random() < 0.5 else mirrored
    return y0 + mirrored, x0 + cols


def _pixels(lo: float, hi: float, n: int) -> slice:
    """The pixel indices ``i`` in ``[0, n)`` whose centre ``i + 0.5`` lies in ``[lo, hi]``."""
    start = max(0, math.ceil(lo - 0.5))
    return slice(start, max(start, min(n, math.floor(hi - 0.5) + 1)))


def _paint_ellipse(label: np.ndarray, value: int, cy: float, cx: float, ry: float, rx: float, below: float) -> None:
    """Set the pixels inside the ellipse (and above row ``below``) to ``value``."""
    rs, cs = _pixels(cy - ry, min(cy + ry, below - 1e-3), label.shape[0]), _pixels(cx - rx, cx + rx, label.shape[1])
    rows = np.arange(rs.start, rs.stop, dtype=np.float32)[:, None] + 0.5
    cols = np.arange(cs.start, cs.stop, dtype=np.float32)[None, :] + 0.5
    label[rs, cs][((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1] = value


def _street_labels(rng: np.random.Generator, size: int) -> np.ndarray:
    """One random street-scene label map (uint8 train IDs) of ``size`` x ``size``."""
    label = np.full((size, size), SKY, dtype=np.uint8)
    horizon = rng.uniform(0.35, 0.55) * size

    # Buildings along the horizon, with gaps; trees in front of them.
    left = 0.0
    while left < size:
        width = rng.uniform(0.12, 0.35) * size
        if rng.random() < 0.8:
            top = horizon - rng.uniform(0.1, 0.5) * size
            label[_pixels(top, horizon - 1e-3, size), _pixels(left, left + width - 1e-3, size)] = BUILDING
        left += width
    for _ in range(int(rng.integers(0, 4))):
        cy, cx = horizon - rng.uniform(0.0, 0.2) * size, rng.uniform(0, size)
        ry, rx = rng.uniform(0.06, 0.16, size=2) * size
        _paint_ellipse(label, VEGETATION, cy, cx, ry, rx, below=horizon)

    # Ground: terrain, with a road trapezoid flanked by sidewalks, converging at the horizon.
    ground = _pixels(horizon, size, size)
    rows = np.arange(ground.start, ground.stop, dtype=np.float32)[:, None] + 0.5
    cols = np.arange(size, dtype=np.float32)[None, :] + 0.5
    depth = (rows - horizon) / (size - horizon)  # 0 at the horizon, 1 at the bottom
    vanish = rng.uniform(0.3, 0.7) * size
    half_left, half_right = rng.uniform(0.25, 0.6, size=2) * size
    walk = rng.uniform(0.3, 0.7)
    road_l, road_r = vanish - depth * half_left, vanish + depth * half_right
    walk_l, walk_r = road_l - depth * half_left * walk, road_r + depth * half_right * walk
    label[ground] = np.where(
        (cols >= road_l) & (cols < road_r), ROAD, np.where((cols >= walk_l) & (cols < walk_r), SIDEWALK, TERRAIN)
    )

    # Objects, far to near: poles (some carrying a sign) and persons on sidewalks, cars on the road.
    objects = [(rng.uniform(0.15, 1.0), kind) for kind in ("pole",) * int(rng.integers(0, 3))]
    objects += [(rng.uniform(0.15, 1.0), "person") for _ in range(int(rng.integers(0, 3)))]
    objects += [(rng.uniform(0.1, 1.0), "car") for _ in range(int(rng.integers(0, 4)))]
    for d, kind in sorted(objects):
        base = horizon + d * (size - horizon)
        lroad, rroad = vanish - d * half_left, vanish + d * half_right
        if kind == "car":
            width = max(2.0, (rroad - lroad) * rng.uniform(0.3, 0.45))
            height = width * rng.uniform(0.5, 0.75)
            cx = rng.uniform(lroad + width / 2, max(lroad + width / 2, rroad - width / 2))
            body, cabin = _pixels(cx - width / 2, cx + width / 2, size), _pixels(cx - width * 0.32, cx + width * 0.32, size)
            label[_pixels(base - height * 0.6, base, size), body] = CAR
            label[_pixels(base - height, base - height * 0.6, size), cabin] = CAR
            continue
        on_left = rng.random() < 0.5
        cx = lroad - d * half_left * walk / 2 if on_left else rroad + d * half_right * walk / 2
        if kind == "pole":
            height, width = d * rng.uniform(0.5, 0.9) * size, max(1.0, d * 0.03 * size)
            label[_pixels(base - height, base, size), _pixels(cx - width / 2, cx + width / 2, size)] = POLE
            if rng.random() < 0.6:
                half = max(1.0, d * 0.05 * size)
                top = base - height
                label[_pixels(top, top + 2 * half, size), _pixels(cx - half, cx + half, size)] = TRAFFIC_SIGN
        else:
            height = max(3.0, d * rng.uniform(0.25, 0.35) * size)
            width = height * 0.35
            label[_pixels(base - height * 0.8, base, size), _pixels(cx - width / 2, cx + width / 2, size)] = PERSON
            radius = height * 0.12
            _paint_ellipse(label, PERSON, base - height * 0.88, cx, radius, radius, below=size)
    return label


#: Scene styles: ``varied`` draws each class's base colour from its list, with strong colour and
#: lighting jitter; ``clear`` gives every class one base colour (the first of its list) and mild
#: jitter, so the label map determines the colours and the textures carry the rest.
SCENE_STYLES = ("varied", "clear")
_STYLE_JITTER = {  # colour gain, person colour gain, lighting gain, slope, noise sigma ranges
    "varied": ((0.85, 1.15), (0.8, 1.2), (0.7, 1.25), (-0.3, 0.3), (2.0, 8.0)),
    "clear": ((0.95, 1.05), (0.95, 1.05), (0.9, 1.1), (-0.1, 0.1), (1.0, 3.0)),
}


def _render_street(label: np.ndarray, split: str, rng: np.random.Generator, style_name: str = "varied") -> np.ndarray:
    """Render a label map as a float32 3 x H x W photo in [0, 255]: per-class textures, lighting, noise."""
    colour_gain, person_gain = _STYLE_JITTER[style_name][:2]
    size = label.shape[0]
    flat = label.reshape(-1)
    image = np.empty((3, size * size), dtype=np.float32)
    for train_id in np.flatnonzero(np.bincount(flat, minlength=256)):
        style = _STYLES[int(train_id)]
        index = np.flatnonzero(flat == train_id)
        rows, cols = np.divmod(index, size)
        if not style.colours:  # the photo's own colours
            texture = _pyramid(style.photo)[style.level].numpy()
            ty, tx = _texture_coords(texture.shape, split, size, rng)
            image[:, index] = texture[:, ty[rows], tx[cols]] * rng.uniform(*person_gain)
            continue
        texture = _grey_texture(style.photo, style.level)
        ty, tx = _texture_coords(texture.shape, split, size, rng)
        choice = int(rng.integers(len(style.colours))) if style_name == "varied" else 0
        colour = np.asarray(style.colours[choice], dtype=np.float32)
        colour = colour * rng.uniform(*colour_gain, size=3).astype(np.float32)
        shade = 1 + style.contrast * texture[ty[rows], tx[cols]]
        if train_id == SKY:  # brighter towards the horizon
            shade = shade * (0.85 + 0.4 * rows.astype(np.float32) / size)
        image[:, index] = colour[:, None] * shade[None, :]
    return image.reshape(3, size, size)


def _street_split(n: int, size: int, split: str, rng: np.random.Generator, style: str = "varied") -> tuple[Tensor, Tensor]:
    gain_range, slope_range, sigma_range = _STYLE_JITTER[style][2:]
    labels = np.empty((n, size, size), dtype=np.uint8)
    images = np.empty((n, 3, size, size), dtype=np.float32)
    for i in range(n):
        labels[i] = _street_labels(rng, size)
        images[i] = _render_street(labels[i], split, rng, style)
    x = torch.from_numpy(images)
    # Lighting: global gain and a left-right illumination gradient, then sensor noise.
    gain = torch.from_numpy(rng.uniform(*gain_range, size=(n, 1, 1, 1)).astype(np.float32))
    slope = torch.from_numpy(rng.uniform(*slope_range, size=(n, 1, 1, 1)).astype(np.float32))
    ramp = (torch.arange(size, dtype=torch.float32) + 0.5) / size - 0.5
    x = x * gain * (1 + slope * ramp)
    sigma = torch.from_numpy(rng.uniform(*sigma_range, size=(n, 1, 1, 1)).astype(np.float32))
    generator = torch.Generator().manual_seed(int(rng.integers(2**63)))
    x = x + torch.randn(x.shape, generator=generator) * sigma
    return _to_uint8(x), torch.from_numpy(labels.astype(np.int64))


def _street_meta(name: str, split: str, y: Tensor) -> dict:
    return {
        "name": name,
        "split": split,
        "classes": list(TRAINID_NAMES),
        "num_classes": len(TRAINID_NAMES),
        "classes_present": torch.bincount(y.flatten(), minlength=256).nonzero().flatten().tolist(),
        "ignore_index": IGNORE_INDEX,
    }


def _street_sets(seed: int, n_train: int, n_test: int, size: int, style: str = "varied") -> dict[str, tuple[Tensor, Tensor]]:
    if n_train < 0 or n_test < 0 or size < 16:
        raise ValueError(f"expected n_train, n_test >= 0 and size >= 16, received {n_train}, {n_test}, {size}")
    if style not in SCENE_STYLES:
        raise ValueError(f"unknown scene style {style!r}; expected one of {SCENE_STYLES}")
    return {
        split: _street_split(n, size, split, _rng(seed, f"street/{split}"), style)
        for split, n in (("train", n_train), ("test", n_test))
    }


def embedded_segmentation(
    seed: int = 0, n_train: int = 2000, n_test: int = 400, size: int = 64, style: str = "varied"
) -> tuple[ImageSet, ImageSet]:
    """An offline Cityscapes stand-in (NNW-TEC §6.1 semantic segmentation): procedural street scenes.

    x = rendered photo (uint8 N x 3 x ``size`` x ``size``), y = int64 Cityscapes train-ID
    map (classes of :data:`SCENE_CLASSES`). Class textures are cut from the bundled
    photos (train from the left 75%, test from the right 25% of each photo), with
    random base colours, lighting and noise (``style``: :data:`SCENE_STYLES`).
    """
    (x_train, y_train), (x_test, y_test) = _street_sets(seed, n_train, n_test, size, style).values()
    return (
        ImageSet(x=x_train, y=y_train, meta=_street_meta("embedded_segmentation", "train", y_train)),
        ImageSet(x=x_test, y=y_test, meta=_street_meta("embedded_segmentation", "test", y_test)),
    )


def embedded_generation(
    seed: int = 0, n_train: int = 2000, n_test: int = 400, size: int = 64, style: str = "varied"
) -> tuple[ImageSet, ImageSet]:
    """An offline Cityscapes stand-in for pix2pix (NNW-TEC §6.1 generation): label map -> photo.

    x = :func:`~nnw.data.cityscapes.colorize_trainids` of the street-scene label map,
    y = the rendered photo (both uint8 N x 3 x ``size`` x ``size``); same scenes as
    :func:`embedded_segmentation` for the same arguments.
    """
    (x_train, y_train), (x_test, y_test) = _street_sets(seed, n_train, n_test, size, style).values()
    return (
        ImageSet(x=colorize_trainids(y_train), y=x_train, meta=_street_meta("embedded_generation", "train", y_train)),
        ImageSet(x=colorize_trainids(y_test), y=x_test, meta=_street_meta("embedded_generation", "test", y_test)),
    )
