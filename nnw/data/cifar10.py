"""CIFAR10 (NNW-TEC §6.1 image classification) read from a local root, never downloaded.

Two on-disk versions are accepted, both as distributed by the dataset's authors:

* ``cifar-10-batches-py`` (torchvision's layout): Python pickles of dicts with
  ``data`` (uint8 N x 3072, rows of 1024 R, 1024 G, 1024 B values) and ``labels``.
  They are read with a restricted unpickler that resolves only the globals a numpy
  array needs; anything else raises :class:`UnsafeDataError` before it can run.
* ``cifar-10-batches-bin``: records of 1 label byte + 3072 pixel bytes, no pickle.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from nnw.data.errors import DataRootError, UnsafeDataError
from nnw.data.imageset import ImageSet

__all__ = ["CIFAR10_CLASSES", "CIFAR10_LAYOUT", "load_cifar10", "restricted_unpickle", "write_cifar10_bin",
           "make_cifar10_stand_in"]

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip

PY_FOLDER = "cifar-10-batches-py"
BIN_FOLDER = "cifar-10-batches-bin"
_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST_BATCHES = ("test_batch",)
_PIXELS = 3 * 32 * 32

CIFAR10_LAYOUT = f"""\
<root>/
└── {PY_FOLDER}/            pickled batches, as torchvision downloads them
    ├── data_batch_1 … data_batch_5
    ├── test_batch
    └── batches.meta           (optional: class names)
or
<root>/
└── {BIN_FOLDER}/           binary version: records of 1 label byte + 3072 pixel bytes
    ├── data_batch_1.bin … data_batch_5.bin
    ├── test_batch.bin
    └── batches.meta.txt       (optional: class names, one a line)
"""

_ALLOWED_GLOBALS: tuple[str, ...] = (
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.ndarray",
    "numpy.dtype",
)


def _allowed_object(qualified: str) -> Any:
    if qualified.endswith("._reconstruct"):
        core = getattr(np, "_core", None) or np.core  # numpy >= 2 renamed numpy.core
        return core.multiarray._reconstruct
    return {"numpy.ndarray": np.ndarray, "numpy.dtype": np.dtype}[qualified]


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals in ``_ALLOWED_GLOBALS``; refuses every other one."""

    def __init__(self, data: bytes, path: Path) -> None:
        super().__init__(io.BytesIO(data), encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        qualified = f"{module}.{name}"
        if qualified not in _ALLOWED_GLOBALS:
            raise UnsafeDataError(self._path, qualified, _ALLOWED_GLOBALS)
        return _allowed_object(qualified)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeDataError(self._path, f"persistent id {pid!r}", _ALLOWED_GLOBALS)


def restricted_unpickle(path: str | Path) -> Any:
    """Unpickle ``path`` admitting only numpy arrays, dtypes and plain containers.

    Python 2 strings come back as ``bytes`` (``encoding="bytes"``, as the CIFAR
    authors' reader does). Raises :class:`UnsafeDataError` for any other global and
    :class:`DataRootError` for a truncated or corrupt pickle.
    """
    path = Path(path)
    data = _read_bytes(path)
    try:
        return _RestrictedUnpickler(data, path).load()
    except UnsafeDataError:
        raise
    except Exception as error:  # any decoding failure means the file is not a valid pickle
        raise DataRootError(
            path, f"truncated or corrupt pickle ({type(error).__name__}: {error})", CIFAR10_LAYOUT
        ) from error


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as error:
        raise DataRootError(path, "missing CIFAR10 file", CIFAR10_LAYOUT) from error
    except OSError as error:
        raise DataRootError(path, f"unreadable CIFAR10 file ({error})", CIFAR10_LAYOUT) from error


def _text(value: Any) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


def _read_py_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    entry = restricted_unpickle(path)
    if not isinstance(entry, dict):
        raise DataRootError(path, f"expected a pickled dict, found {type(entry).__name__}", CIFAR10_LAYOUT)
    entry = {_text(key): value for key, value in entry.items()}
    data, labels = entry.get("data"), entry.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        found = f"{type(data).__name__} {getattr(data, 'dtype', '')} {getattr(data, 'shape', '')}".strip()
        raise DataRootError(path, f"expected 'data' as uint8 N x {_PIXELS}, found {found}", CIFAR10_LAYOUT)
    try:
        label_array = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as error:
        raise DataRootError(path, f"expected 'labels' as a list of ints ({error})", CIFAR10_LAYOUT) from error
    if label_array.shape != (data.shape[0],):
        raise DataRootError(
            path, f"expected {data.shape[0]} labels, found shape {label_array.shape}", CIFAR10_LAYOUT
        )
    return data, label_array


def _read_bin_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = np.frombuffer(_read_bytes(path), dtype=np.uint8)
    record = 1 + _PIXELS
    if raw.size == 0 or raw.size % record != 0:
        raise DataRootError(
            path,
            f"truncated or corrupt binary batch: {raw.size} bytes is not a positive multiple of "
            f"the {record}-byte record",
            CIFAR10_LAYOUT,
        )
    records = raw.reshape(-1, record)
    return records[:, 1:], records[:, 0].astype(np.int64)


def _class_names(folder: Path, fmt: str) -> list[str]:
    if fmt == "py":
        meta_path = folder / "batches.meta"
        if not meta_path.is_file():
            return list(CIFAR10_CLASSES)
        meta = restricted_unpickle(meta_path)
        names = meta.get(b"label_names", meta.get("label_names")) if isinstance(meta, dict) else None
        if not isinstance(names, list):
            raise DataRootError(meta_path, "expected a dict with 'label_names'", CIFAR10_LAYOUT)
        return [_text(name) for name in names]
    meta_path = folder / "batches.meta.txt"
    if not meta_path.is_file():
        return list(CIFAR10_CLASSES)
    return [line.strip() for line in meta_path.read_text(encoding="latin1").splitlines() if line.strip()]


def _find_folder(root: Path, layout: str | None) -> tuple[Path, str]:
    candidates = {
        "py": (root / PY_FOLDER, root / "data_batch_1"),
        "bin": (root / BIN_FOLDER, root / "data_batch_1.bin"),
    }
    formats = ("py", "bin") if layout is None else (layout,)
    for fmt in formats:
        folder, marker = candidates[fmt]
        if folder.is_dir():
            return folder, fmt
        if marker.is_file():  # root is the batches folder itself
            return root, fmt
    wanted = " or ".join(f"{root / candidates[f][0].name}/" for f in formats)
    problem = "CIFAR10 root not found" if not root.is_dir() else f"no CIFAR10 batches folder ({wanted}) in root"
    raise DataRootError(root, problem, CIFAR10_LAYOUT)


def load_cifar10(root: str | Path, train: bool, layout: str | None = None) -> ImageSet:
    """CIFAR10's train (50 000) or test (10 000) split from ``root`` as uint8 N x 3 x 32 x 32 + int64 labels.

    ``root`` is the folder that holds ``cifar-10-batches-py`` or ``cifar-10-batches-bin``
    (the batches folder itself is accepted too); ``layout`` = ``"py"`` or ``"bin"``
    forces one version, ``None`` prefers the pickled one when both exist.
    """
    if layout not in (None, "py", "bin"):
        raise ValueError(f"layout must be None, 'py' or 'bin', received {layout!r}")
    folder, fmt = _find_folder(Path(root), layout)
    names = _TRAIN_BATCHES if train else _TEST_BATCHES
    suffix = ".bin" if fmt == "bin" else ""
    reader = _read_bin_batch if fmt == "bin" else _read_py_batch
    classes = _class_names(folder, fmt)
    images, labels = [], []
    for name in names:
        path = folder / f"{name}{suffix}"
        data, batch_labels = reader(path)
        if batch_labels.size and (batch_labels.min() < 0 or batch_labels.max() >= len(classes)):
            raise DataRootError(
                path,
                f"labels must lie in [0, {len(classes)}), found [{batch_labels.min()}, {batch_labels.max()}]",
                CIFAR10_LAYOUT,
            )
        images.append(data)
        labels.append(batch_labels)
    x = torch.from_numpy(np.concatenate(images).reshape(-1, 3, 32, 32).copy())
    y = torch.from_numpy(np.concatenate(labels))
    meta = {
        "name": "cifar10",
        "split": "train" if train else "test",
        "classes": classes,
        "num_classes": len(classes),
        "format": fmt,
        "root": str(folder),
    }
    return ImageSet(x=x, y=y, meta=meta)


def write_cifar10_bin(root: str | Path, train: ImageSet, test: ImageSet,
                      classes: Sequence[str] = CIFAR10_CLASSES) -> Path:
    """Write ``train``/``test`` (uint8 N x 3 x 32 x 32, labels < 256) as ``root/cifar-10-batches-bin``:
    five ``data_batch_i.bin`` + ``test_batch.bin`` of 1-label-byte + 3072-pixel-byte records and
    ``batches.meta.txt`` — the official binary layout, readable by :func:`load_cifar10` (no pickle)."""
    folder = Path(root) / BIN_FOLDER
    for name, split in (("train", train), ("test", test)):
        if split.x.dtype != torch.uint8 or tuple(split.x.shape[1:]) != (3, 32, 32):
            raise ValueError(f"{name}: expected uint8 N x 3 x 32 x 32 images, got {split.x.dtype} {tuple(split.x.shape)}")
        if split.y.numel() and (int(split.y.min()) < 0 or int(split.y.max()) >= len(classes)):
            raise ValueError(f"{name}: labels must lie in [0, {len(classes)})")
    folder.mkdir(parents=True, exist_ok=True)

    def records(split: ImageSet, index: np.ndarray) -> bytes:
        x = split.x.reshape(split.x.shape[0], -1).numpy()[index]
        y = split.y.numpy().astype(np.uint8)[index]
        return np.concatenate([y[:, None], x], axis=1).tobytes()

    for i, chunk in enumerate(np.array_split(np.arange(train.x.shape[0]), len(_TRAIN_BATCHES))):
        (folder / f"{_TRAIN_BATCHES[i]}.bin").write_bytes(records(train, chunk))
    (folder / f"{_TEST_BATCHES[0]}.bin").write_bytes(records(test, np.arange(test.x.shape[0])))
    (folder / "batches.meta.txt").write_text("\n".join(classes) + "\n\n")
    return folder


def make_cifar10_stand_in(root: str | Path, n_train: int = 50_000, n_test: int = 10_000, seed: int = 0) -> Path:
    """A CIFAR-10-sized data root (default 50 000 + 10 000 images of 32 x 32, 10 classes) in the
    official binary layout, from the embedded classification set (:mod:`nnw.data.embedded`): for
    timing the spec profile where the real CIFAR-10 cannot be downloaded. Not for certification."""
    from nnw.data.embedded import CLASSIFICATION_SOURCES, embedded_classification

    train, test = embedded_classification(seed=seed, n_train=n_train, n_test=n_test, size=32, num_classes=10)
    return write_cifar10_bin(root, train, test, classes=CLASSIFICATION_SOURCES[:10])
