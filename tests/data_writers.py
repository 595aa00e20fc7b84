"""Write tiny datasets in the real on-disk formats read by :mod:`nnw.data` (test helpers).

Each writer builds random content from a seed, writes it where the loader expects it
and returns what it wrote, so a test can compare the loader's tensors with the truth.
The CIFAR10 pickles are written opcode by opcode the way Python 2's cPickle wrote the
official files (protocol 2, ``numpy.core.multiarray._reconstruct``, byte strings).
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "CifarFiles",
    "CityscapesFiles",
    "Div2kFiles",
    "Opcodes",
    "py2_dtype",
    "py2_pickle",
    "py2_raw_ndarray",
    "write_cifar10_bin",
    "write_cifar10_py",
    "write_cityscapes",
    "write_div2k",
]

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


# --------------------------------------------------------------------------- CIFAR10
def _py2_str(value: bytes) -> bytes:
    if len(value) < 256:
        return pickle.SHORT_BINSTRING + bytes([len(value)]) + value
    return pickle.BINSTRING + struct.pack("<i", len(value)) + value


def _py2_int(value: int) -> bytes:
    if 0 <= value < 256:
        return pickle.BININT1 + bytes([value])
    return pickle.BININT + struct.pack("<i", value)


class Opcodes(bytes):
    """Pickle opcodes written as they are inside :func:`py2_pickle` (for hand-made hostile files)."""


def _py2_value(value: object) -> bytes:
    if isinstance(value, Opcodes):
        return bytes(value)
    if value is None:
        return pickle.NONE
    if isinstance(value, tuple):
        return pickle.MARK + b"".join(_py2_value(item) for item in value) + pickle.TUPLE
    if isinstance(value, np.ndarray):
        return _py2_ndarray(value)
    if isinstance(value, bool):
        raise TypeError(f"not needed by the CIFAR10 files: {value!r}")
    if isinstance(value, int):
        return _py2_int(value)
    if isinstance(value, str):
        return _py2_str(value.encode("latin1"))
    if isinstance(value, bytes):
        return _py2_str(value)
    if isinstance(value, list):
        items = b"".join(_py2_value(item) for item in value)
        return pickle.EMPTY_LIST + (pickle.MARK + items + pickle.APPENDS if value else b"")
    if isinstance(value, dict):
        items = b"".join(_py2_value(k) + _py2_value(v) for k, v in value.items())
        return pickle.EMPTY_DICT + (pickle.MARK + items + pickle.SETITEMS if value else b"")
    raise TypeError(f"cannot write {type(value).__name__} as a Python 2 pickle")


def py2_dtype(tag: bytes = b"u1", state: object = None) -> Opcodes:
    """numpy's pickle of ``dtype(tag)``; ``state`` replaces uint8's state (3, '|', None, None, None, -1, -1, 0)."""
    if state is None:
        body = (pickle.MARK + _py2_int(3) + _py2_str(b"|") + pickle.NONE * 3
                + pickle.BININT + struct.pack("<i", -1) + pickle.BININT + struct.pack("<i", -1) + _py2_int(0)
                + pickle.TUPLE)  # fmt: skip
    else:
        body = _py2_value(state)
    return Opcodes(b"cnumpy\ndtype\n" + _py2_str(tag) + _py2_int(0) + _py2_int(1) + pickle.TUPLE3 + pickle.REDUCE
                   + body + pickle.BUILD)


def py2_raw_ndarray(shape: tuple[int, ...], payload: bytes, dtype: bytes = b"", fortran: bool = False) -> Opcodes:
    """numpy's protocol-2 pickle of an array of ``shape`` whose data is ``payload`` as raw bytes, with the
    dtype opcodes ``dtype`` (:func:`py2_dtype`; uint8 by default) — genuine, or hostile on purpose."""
    dims = b"".join(pickle.BININT + struct.pack("<i", d) for d in shape)
    return Opcodes(
        b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n"
        + _py2_int(0) + pickle.TUPLE1 + _py2_str(b"b") + pickle.TUPLE3 + pickle.REDUCE
        + pickle.MARK + _py2_int(1) + pickle.MARK + dims + pickle.TUPLE + (dtype or py2_dtype())
        + (pickle.NEWTRUE if fortran else pickle.NEWFALSE) + _py2_str(payload) + pickle.TUPLE + pickle.BUILD
    )  # fmt: skip


def _py2_ndarray(array: np.ndarray) -> bytes:
    if array.dtype != np.uint8:
        raise TypeError("the CIFAR10 files hold uint8 arrays only")
    return py2_raw_ndarray(array.shape, np.ascontiguousarray(array).tobytes())


def py2_pickle(value: object) -> bytes:
    """``value`` (dict/list/int/str/bytes/uint8 ndarray) pickled as Python 2's cPickle protocol 2 did."""
    return pickle.PROTO + b"\x02" + _py2_value(value) + pickle.STOP


@dataclass
class CifarFiles:
    """What a CIFAR10 writer wrote: the batches folder and the expected arrays."""

    folder: Path
    train_data: np.ndarray  # uint8 N x 3072
    train_labels: np.ndarray  # int64 N
    test_data: np.ndarray
    test_labels: np.ndarray
    files: list[Path] = field(default_factory=list)


def _cifar_arrays(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), rng.integers(0, 10, size=n).astype(np.int64)


def write_cifar10_py(
    root: str | Path, n_train: int = 10, n_test: int = 4, seed: int = 0, style: str = "py2"
) -> CifarFiles:
    """A ``cifar-10-batches-py`` folder under ``root`` with ``n_train`` images over 5 batches.

    ``style="py2"`` writes the official files' Python 2 pickles; ``"py3"`` uses
    ``pickle.dumps(protocol=4)`` of the same dicts (keys ``b"data"``, ``b"labels"``).
    """
    if style not in ("py2", "py3"):
        raise ValueError(f"style must be 'py2' or 'py3', received {style!r}")
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    train_data, train_labels = _cifar_arrays(n_train, rng)
    test_data, test_labels = _cifar_arrays(n_test, rng)
    dump = py2_pickle if style == "py2" else (lambda value: pickle.dumps(value, protocol=4))
    files = []
    chunks = np.array_split(np.arange(n_train), 5)
    batches = [(f"data_batch_{i + 1}", train_data[c], train_labels[c]) for i, c in enumerate(chunks)]
    batches.append(("test_batch", test_data, test_labels))
    for name, data, labels in batches:
        entry = {
            b"batch_label": f"{name} (nnw test)".encode(),
            b"labels": [int(v) for v in labels],
            b"data": data,
            b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
        }
        (folder / name).write_bytes(dump(entry))
        files.append(folder / name)
    meta = {
        b"num_cases_per_batch": max(len(c) for c in chunks),
        b"label_names": [name.encode() for name in CLASS_NAMES],
        b"num_vis": 3072,
    }
    (folder / "batches.meta").write_bytes(dump(meta))
    return CifarFiles(folder, train_data, train_labels, test_data, test_labels, files)


def write_cifar10_bin(root: str | Path, n_train: int = 10, n_test: int = 4, seed: int = 0) -> CifarFiles:
    """A ``cifar-10-batches-bin`` folder under ``root``: records of 1 label byte + 3072 pixel bytes."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-bin"
    folder.mkdir(parents=True, exist_ok=True)
    train_data, train_labels = _cifar_arrays(n_train, rng)
    test_data, test_labels = _cifar_arrays(n_test, rng)
    files = []
    chunks = np.array_split(np.arange(n_train), 5)
    batches = [(f"data_batch_{i + 1}.bin", train_data[c], train_labels[c]) for i, c in enumerate(chunks)]
    batches.append(("test_batch.bin", test_data, test_labels))
    for name, data, labels in batches:
        records = np.concatenate([labels.astype(np.uint8)[:, None], data], axis=1)
        (folder / name).write_bytes(records.tobytes())
        files.append(folder / name)
    (folder / "batches.meta.txt").write_text("\n".join(CLASS_NAMES) + "\n\n")
    return CifarFiles(folder, train_data, train_labels, test_data, test_labels, files)


# --------------------------------------------------------------------------- Cityscapes
@dataclass
class CityscapesFiles:
    """What :func:`write_cityscapes` wrote, in the loader's (sorted) order."""

    photos: list[Path]
    labels: list[Path]
    photo_arrays: list[np.ndarray]  # H x W x 3 uint8
    label_arrays: list[np.ndarray]  # H x W uint8 labelIds


def write_cityscapes(
    root: str | Path,
    split: str = "train",
    cities: tuple[str, ...] = ("aachen", "bremen"),
    per_city: int = 1,
    size: tuple[int, int] = (16, 32),
    seed: int = 0,
) -> CityscapesFiles:
    """Photo/label PNG pairs in torchvision's Cityscapes layout (plus a decoy ``_color.png``).

    Label maps hold random Cityscapes labelIds in [0, 33]; ``size`` is (H, W).
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    out = CityscapesFiles([], [], [], [])
    for city in sorted(cities):
        photo_dir = root / "leftImg8bit" / split / city
        label_dir = root / "gtFine" / split / city
        photo_dir.mkdir(parents=True, exist_ok=True)
        label_dir.mkdir(parents=True, exist_ok=True)
        for frame in range(per_city):
            stem = f"{city}_{frame:06d}_{19 + frame:06d}"
            photo = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
            label = rng.integers(0, 34, size=size, dtype=np.uint8)
            Image.fromarray(photo).save(photo_dir / f"{stem}_leftImg8bit.png")
            Image.fromarray(label).save(label_dir / f"{stem}_gtFine_labelIds.png")
            Image.fromarray(photo[:, :, ::-1].copy()).save(label_dir / f"{stem}_gtFine_color.png")
            out.photos.append(photo_dir / f"{stem}_leftImg8bit.png")
            out.labels.append(label_dir / f"{stem}_gtFine_labelIds.png")
            out.photo_arrays.append(photo)
            out.label_arrays.append(label)
    return out


# --------------------------------------------------------------------------- DIV2K
@dataclass
class Div2kFiles:
    """What :func:`write_div2k` wrote."""

    hr: list[Path]
    lr: list[Path]
    hr_arrays: list[np.ndarray]  # H x W x 3 uint8


def write_div2k(
    root: str | Path,
    split: str = "train",
    n: int = 2,
    size: tuple[int, int] = (24, 36),
    scale: int = 2,
    with_lr: bool = True,
    seed: int = 0,
) -> Div2kFiles:
    """``DIV2K_{split}_HR/NNNN.png`` (and ``DIV2K_{split}_LR_bicubic/X{scale}/NNNNx{scale}.png``).

    HR images are smooth random colour fields of ``size`` (H, W); LR images are their
    PIL bicubic downscaling, as in the official release. Valid images are numbered from 0801.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    hr_dir = root / f"DIV2K_{split}_HR"
    lr_dir = root / f"DIV2K_{split}_LR_bicubic" / f"X{scale}"
    hr_dir.mkdir(parents=True, exist_ok=True)
    if with_lr:
        lr_dir.mkdir(parents=True, exist_ok=True)
    first = 801 if split == "valid" else 1
    out = Div2kFiles([], [], [])
    for i in range(n):
        coarse = rng.integers(0, 256, size=(3, 4, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((size[1], size[0]), Image.BICUBIC)
        noise = rng.integers(-20, 21, size=(*size, 3))
        array = np.clip(np.asarray(image).astype(np.int16) + noise, 0, 255).astype(np.uint8)
        hr_path = hr_dir / f"{first + i:04d}.png"
        Image.fromarray(array).save(hr_path)
        out.hr.append(hr_path)
        out.hr_arrays.append(array)
        if with_lr:
            lr_path = lr_dir / f"{first + i:04d}x{scale}.png"
            Image.fromarray(array).resize((size[1] // scale, size[0] // scale), Image.BICUBIC).save(lr_path)
            out.lr.append(lr_path)
    return out
