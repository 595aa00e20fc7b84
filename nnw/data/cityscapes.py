"""Cityscapes (NNW-TEC §6.1 semantic segmentation and pix2pix generation) from a local root.

Layout as torchvision reads it: ``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` photos
and ``gtFine/{split}/{city}/*_gtFine_labelIds.png`` label maps. Label IDs are mapped to
the 19 evaluation train IDs of the official cityscapesScripts (``labels.py``); every
other ID becomes 255 (ignore). Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from nnw.data.errors import DataRootError, listed_files
from nnw.data.imagefile import read_image
from nnw.data.imageset import IGNORE_INDEX, ImageSet

__all__ = [
    "CITYSCAPES_LAYOUT",
    "LABEL_TO_TRAINID",
    "TRAINID_NAMES",
    "TRAINID_PALETTE",
    "colorize_trainids",
    "labelids_to_trainids",
    "load_cityscapes",
]

TRAINID_NAMES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip
"""The 19 Cityscapes evaluation classes, indexed by train ID."""

_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)

LABEL_TO_TRAINID: dict[int, int] = {label_id: train_id for train_id, label_id in enumerate(_LABEL_IDS)}
"""Official labelId -> trainId mapping; IDs not listed map to 255."""

TRAINID_PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
    (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)  # fmt: skip
"""Official Cityscapes colour of each train ID; ignored pixels (255) are drawn black."""

_SPLITS = ("train", "val", "test")
CITYSCAPES_LAYOUT = """\
<root>/
├── leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
└── gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
"""

_LUT = np.full(256, IGNORE_INDEX, dtype=np.uint8)
for _label_id, _train_id in LABEL_TO_TRAINID.items():
    _LUT[_label_id] = _train_id


def labelids_to_trainids(label_ids: np.ndarray) -> np.ndarray:
    """Map an array of Cityscapes labelIds (0..255) to train IDs (0..18, 255 = ignore)."""
    return _LUT[np.asarray(label_ids, dtype=np.uint8)]


def colorize_trainids(y: Tensor) -> Tensor:
    """Train-ID maps (N x H x W or H x W) drawn in the official palette: uint8 N x 3 x H x W.

    Pixels outside 0..18 (the ignore value 255 included) are black. This is the input
    of the pix2pix label-map -> photo task.
    """
    if y.dim() == 2:
        y = y[None]
    if y.dim() != 3:
        raise ValueError(f"expected train-ID maps N x H x W or H x W, received shape {tuple(y.shape)}")
    palette = torch.zeros((256, 3), dtype=torch.uint8, device=y.device)
    palette[: len(TRAINID_PALETTE)] = torch.tensor(TRAINID_PALETTE, dtype=torch.uint8, device=y.device)
    index = torch.where((y >= 0) & (y < 256), y, torch.full_like(y, IGNORE_INDEX)).long()
    return palette[index].permute(0, 3, 1, 2).contiguous()


def _read_png(path: Path) -> Image.Image:
    return read_image(path, CITYSCAPES_LAYOUT)


def _label_ids(image: Image.Image, path: Path) -> np.ndarray:
    if image.mode not in ("L", "P", "I", "I;16"):
        raise DataRootError(path, f"expected a single-channel labelIds PNG, found mode {image.mode}", CITYSCAPES_LAYOUT)
    return np.clip(np.asarray(image), 0, 255).astype(np.uint8)


def _size_tuple(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    height, width = (size, size) if isinstance(size, int) else size
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive (H, W), received {size!r}")
    return int(height), int(width)


def load_cityscapes(
    root: str | Path,
    split: str,
    size: int | tuple[int, int] | None = None,
    limit: int | None = None,
) -> ImageSet:
    """Cityscapes ``split`` as x = uint8 photos N x 3 x H x W, y = int64 train-ID maps N x H x W.

    ``size`` (H, W) (an int means square) resizes photos bilinearly and label maps by
    nearest neighbour; without it every image must have the same size. ``limit`` keeps
    the first pairs in sorted file order.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, received {split!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be None or >= 1, received {limit}")
    target = _size_tuple(size)
    root = Path(root)
    photo_dir = root / "leftImg8bit" / split
    label_dir = root / "gtFine" / split
    photos = listed_files(root, (photo_dir, label_dir), "*/*_leftImg8bit.png", "Cityscapes",
                          "no *_leftImg8bit.png photos in", CITYSCAPES_LAYOUT, limit)
    xs, ys, stems = [], [], []
    for photo_path in photos:
        stem = photo_path.name[: -len("_leftImg8bit.png")]
        label_path = label_dir / photo_path.parent.name / f"{stem}_gtFine_labelIds.png"
        if not label_path.is_file():
            raise DataRootError(label_path, "missing label map for " + photo_path.name, CITYSCAPES_LAYOUT)
        photo = _read_png(photo_path).convert("RGB")
        label = _read_png(label_path)
        if photo.size != label.size:
            raise DataRootError(
                label_path, f"label map size {label.size} differs from photo size {photo.size}", CITYSCAPES_LAYOUT
            )
        if target is not None:
            photo = photo.resize((target[1], target[0]), Image.BILINEAR)
            label = label.resize((target[1], target[0]), Image.NEAREST)
        photo_array = np.asarray(photo, dtype=np.uint8)
        if xs and photo_array.shape != xs[0].shape:
            raise ValueError(
                f"Cityscapes images differ in size ({photo_path} is {photo.size}, the first one "
                f"{xs[0].shape[1::-1]}); pass size=(H, W) to resize them"
            )
        xs.append(photo_array)
        ys.append(labelids_to_trainids(_label_ids(label, label_path)))
        stems.append(stem)
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(np.stack(ys).astype(np.int64))
    meta = {
        "name": "cityscapes",
        "split": split,
        "classes": list(TRAINID_NAMES),
        "num_classes": len(TRAINID_NAMES),
        "ignore_index": IGNORE_INDEX,
        "files": stems,
        "root": str(root),
    }
    return ImageSet(x=x, y=y, meta=meta)
