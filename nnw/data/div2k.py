"""DIV2K (NNW-TEC §6.1 up-sampling, RDN) read from a local root as LR/HR patch pairs.

Layout of the official release: ``DIV2K_{train,valid}_HR/NNNN.png`` and, optionally,
``DIV2K_{train,valid}_LR_bicubic/X{scale}/NNNNx{scale}.png``. Without the LR folder the
LR image is made by bicubic downscaling of the HR image (PIL ``BICUBIC``, which
antialiases like MATLAB's ``imresize``). Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nnw.data.errors import DataRootError, listed_files
from nnw.data.imagefile import read_image
from nnw.data.imageset import ImageSet

__all__ = ["DIV2K_LAYOUT", "load_div2k"]

_SPLITS = ("train", "valid")
DIV2K_LAYOUT = """\
<root>/
├── DIV2K_{train,valid}_HR/
│   └── 0001.png … (train 0001-0800, valid 0801-0900)
└── DIV2K_{train,valid}_LR_bicubic/X{scale}/      (optional: made by bicubic downscaling if absent)
    └── 0001x{scale}.png …
"""


def _read_rgb(path: Path) -> np.ndarray:
    return np.asarray(read_image(path, DIV2K_LAYOUT).convert("RGB"), dtype=np.uint8)


def _bicubic_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    height, width = hr.shape[0] // scale, hr.shape[1] // scale
    cropped = Image.fromarray(hr[: height * scale, : width * scale])
    return np.asarray(cropped.resize((width, height), Image.BICUBIC), dtype=np.uint8)


def load_div2k(
    root: str | Path,
    split: str,
    scale: int = 2,
    patch: int = 96,
    patches_per_image: int = 4,
    seed: int = 0,
    limit: int | None = None,
) -> ImageSet:
    """Random patch pairs: x = LR uint8 N x 3 x (patch/scale)², y = HR uint8 N x 3 x patch².

    Patch positions are drawn from ``seed`` on the LR grid, so each LR patch covers
    exactly its HR patch. ``limit`` keeps the first images in sorted order.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, received {split!r}")
    if scale < 1 or patch < scale or patch % scale != 0:
        raise ValueError(f"patch must be a positive multiple of scale, received patch={patch}, scale={scale}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be None or >= 1, received {limit}")
    if patches_per_image < 1:
        raise ValueError(f"patches_per_image must be >= 1, received {patches_per_image}")
    root = Path(root)
    hr_dir = root / f"DIV2K_{split}_HR"
    hr_paths = listed_files(root, (hr_dir,), "*.png", "DIV2K", "no HR .png images in", DIV2K_LAYOUT, limit)
    lr_dir = root / f"DIV2K_{split}_LR_bicubic" / f"X{scale}"
    use_lr_files = lr_dir.is_dir()
    lr_patch = patch // scale
    rng = np.random.default_rng(np.random.SeedSequence([seed, scale, patch]))
    xs, ys, positions = [], [], []
    for hr_path in hr_paths:
        hr = _read_rgb(hr_path)
        if use_lr_files:
            lr_path = lr_dir / f"{hr_path.stem}x{scale}.png"
            if not lr_path.is_file():
                raise DataRootError(lr_path, f"missing LR image for {hr_path.name}", DIV2K_LAYOUT)
            lr = _read_rgb(lr_path)
            floor = (hr.shape[0] // scale, hr.shape[1] // scale)
            expected = {floor, (-(-hr.shape[0] // scale), -(-hr.shape[1] // scale))}  # floor or ceil
            if lr.shape[:2] not in expected:
                raise DataRootError(
                    lr_path, f"LR size {lr.shape[:2]} does not match HR size {hr.shape[:2]} / {scale}", DIV2K_LAYOUT
                )
        else:
            lr = _bicubic_lr(hr, scale)
        rows, cols = min(lr.shape[0], hr.shape[0] // scale), min(lr.shape[1], hr.shape[1] // scale)
        if rows < lr_patch or cols < lr_patch:
            raise ValueError(f"{hr_path} ({hr.shape[1]}x{hr.shape[0]}) is smaller than the {patch}-pixel patch")
        tops = rng.integers(0, rows - lr_patch + 1, size=patches_per_image)
        lefts = rng.integers(0, cols - lr_patch + 1, size=patches_per_image)
        for top, left in zip(tops, lefts):
            xs.append(lr[top : top + lr_patch, left : left + lr_patch])
            ys.append(hr[top * scale : top * scale + patch, left * scale : left * scale + patch])
            positions.append((top * scale, left * scale))
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(np.stack(ys)).permute(0, 3, 1, 2).contiguous()
    meta = {
        "name": "div2k",
        "split": split,
        "scale": scale,
        "lr_source": "files" if use_lr_files else "bicubic",
        "files": [p.name for p in hr_paths],
        "positions": torch.tensor(positions, dtype=torch.int64),
        "root": str(root),
    }
    return ImageSet(x=x, y=y, meta=meta)
