"""CIFAR10 (NNW-TEC §6.1 image classification) read from a local root, never downloaded.

Two on-disk versions are accepted, both as distributed by the dataset's authors:

* ``cifar-10-batches-py`` (torchvision's layout): Python pickles of dicts with
  ``data`` (uint8 N x 3072, rows of 1024 R, 1024 G, 1024 B values) and ``labels``.
  They are never unpickled: :func:`restricted_unpickle` walks the opcodes
  (``pickletools.genops``, which executes nothing) through a small symbolic stack
  machine that knows plain containers, numbers and strings, and numpy's pickle of a
  *uint8* array in exactly the form numpy writes it (``_reconstruct`` + ``dtype('u1')``
  + a raw byte payload), which it rebuilds itself with ``np.frombuffer``. Every other
  global, dtype, opcode or shape is refused with one error naming the file.
* ``cifar-10-batches-bin``: records of 1 label byte + 3072 pixel bytes, no pickle.

One module over 400 lines on purpose: the pickle batches are read by an opcode-level parser
(they are never unpickled) whose checks belong beside the two formats it accepts.
"""

from __future__ import annotations

import io
import math
import os
import pickletools
import secrets
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from nnw.data.errors import DataError, DataRootError, UnsafeDataError
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
_NUM_CLASSES = 10

#: Bounds on what a batch file may hold (a genuine batch: 10 000 rows, 31 MB, ~40 000 opcodes).
MAX_ROWS = 1_000_000
MAX_FILE_BYTES = MAX_ROWS * (_PIXELS + 1) + (64 << 20)
_MAX_OPCODES = 8 * MAX_ROWS + 10_000
_MAX_REDUCES = 16  # a genuine batch has 2 (one array, one dtype)
_PROTOCOL_MAX = 5  # protocols 2 to 5 share the opcodes read here

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

BINARY_HINT = (f"The pickle-free binary version of CIFAR-10 ({BIN_FOLDER}, from cifar-10-binary.tar.gz) "
               "is read without any pickle; use it instead.")

_ALLOWED_GLOBALS: tuple[str, ...] = (
    "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct",
    "numpy.ndarray",
    "numpy.dtype",
)


# --------------------------------------------------------------------------- pickle, read without executing it
class _Symbol:
    """A numpy object named or built by the pickle, kept as a symbol: never imported, called or built."""

    __slots__ = ()
    description = "a numpy object"


class _Global(_Symbol):
    """A global named by the pickle (one of ``_ALLOWED_GLOBALS``)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def description(self) -> str:  # type: ignore[override]
        return f"a bare reference to {self.name}"


class _PendingDtype(_Symbol):
    """``numpy.dtype('u1', 0, 1)`` before its state (BUILD) arrived."""

    __slots__ = ()
    description = "a numpy dtype without its state"


class _Uint8(_Symbol):
    """``numpy.dtype('u1')`` with numpy's exact state for it: the only dtype an array may have."""

    __slots__ = ()
    description = "a numpy dtype"


class _PendingArray(_Symbol):
    """``_reconstruct(ndarray, (0,), b'b')``: an array before its state (BUILD) arrived."""

    __slots__ = ()
    description = "a numpy array without its state"


_REFUSED_OPCODES = {  # opcodes that build or call arbitrary objects
    "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID",
    "NEXT_BUFFER", "READONLY_BUFFER",
}
_BYTES_OPCODES = {"SHORT_BINSTRING", "BINSTRING", "SHORT_BINBYTES", "BINBYTES", "BINBYTES8"}
_STR_OPCODES = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"}
_INT_OPCODES = {"BININT", "BININT1", "BININT2", "LONG1"}
_PUT_OPCODES = {"PUT", "BINPUT", "LONG_BINPUT"}
_GET_OPCODES = {"GET", "BINGET", "LONG_BINGET"}


def _kind(value: Any) -> str:
    """A short, bounded description of a parsed value (never a repr of a whole structure)."""
    if isinstance(value, _Symbol):
        return value.description
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    if isinstance(value, bool) or (isinstance(value, int) and abs(value) < 10**12):
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, int):
        return "a very large int"
    if isinstance(value, (bytes, str)) and len(value) <= 40:
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, (list, tuple, dict, bytes, str)):
        return f"a {type(value).__name__} of length {len(value)}"
    return type(value).__name__


def _is_int(value: Any, *allowed: int) -> bool:
    return type(value) is int and value in allowed


def _is_flag(value: Any, flag: bool) -> bool:
    return value is flag or _is_int(value, int(flag))


def _is_text(value: Any, text: str) -> bool:
    return (type(value) is str and value == text) or (type(value) is bytes and value == text.encode("ascii"))


class _PickleMachine:
    """Interprets a pickle's opcodes symbolically into plain values and validated uint8 arrays."""

    def __init__(self, data: bytes, path: Path) -> None:
        self.data = data
        self.path = path
        self.stack: list[Any] = []
        self.marks: list[int] = []
        self.memo: dict[int, Any] = {}
        self.reduces = 0
        self.pos = 0

    # errors ---------------------------------------------------------------------------------
    def corrupt(self, problem: str) -> DataRootError:
        return DataRootError(self.path, f"not a CIFAR-10 pickle ({problem}, at byte {self.pos})",
                             CIFAR10_LAYOUT, hint=BINARY_HINT)

    def unsafe(self, refused: str) -> UnsafeDataError:
        return UnsafeDataError(self.path, f"{refused} (at byte {self.pos})", hint=BINARY_HINT)

    # stack ----------------------------------------------------------------------------------
    def pop(self) -> Any:
        if len(self.stack) <= (self.marks[-1] if self.marks else 0):
            raise self.corrupt("an opcode needs a value the stack does not hold")
        return self.stack.pop()

    def top(self) -> Any:
        if len(self.stack) <= (self.marks[-1] if self.marks else 0):
            raise self.corrupt("an opcode needs a value the stack does not hold")
        return self.stack[-1]

    def pop_mark(self) -> list[Any]:
        if not self.marks:
            raise self.corrupt("an opcode needs a MARK that is not there")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    # run ------------------------------------------------------------------------------------
    def run(self) -> Any:
        ops = pickletools.genops(io.BytesIO(self.data))
        count = 0
        while True:
            try:
                opcode, arg, pos = next(ops)
            except StopIteration:
                raise self.corrupt("it ends before its STOP opcode: truncated") from None
            except DataError:
                raise
            except Exception as error:  # noqa: BLE001 — genops only parses; any failure means a bad file
                raise self.corrupt(f"truncated or corrupt pickle: {error}") from None
            self.pos = pos if pos is not None else self.pos
            if (count == 0) != (opcode.name == "PROTO"):
                raise self.corrupt("a CIFAR-10 batch is a pickle of protocol 2 or later, which begins with PROTO"
                                   if count == 0 else "a second PROTO opcode")
            if opcode.name == "PROTO" and not 2 <= arg <= _PROTOCOL_MAX:
                raise self.corrupt(f"pickle protocol {arg}, not 2 to {_PROTOCOL_MAX}")
            count += 1
            if count > _MAX_OPCODES:
                raise self.corrupt(f"more than {_MAX_OPCODES} opcodes")
            if opcode.name == "STOP":
                if self.marks or len(self.stack) != 1:
                    raise self.corrupt(f"it stops with {len(self.stack)} values and {len(self.marks)} open MARKs "
                                       "instead of one value")
                if pos + 1 != len(self.data):
                    raise self.corrupt(f"{len(self.data) - pos - 1} bytes follow its STOP opcode")
                return self.stack[0]
            self.step(opcode.name, arg)

    def step(self, name: str, arg: Any) -> None:  # noqa: C901 — one branch per opcode
        stack = self.stack
        if name in ("PROTO", "FRAME"):
            return
        if name in _REFUSED_OPCODES:
            raise self.unsafe(f"the opcode {name} builds or calls an arbitrary object")
        if name == "MARK":
            self.marks.append(len(stack))
        elif name == "NONE":
            stack.append(None)
        elif name == "NEWTRUE":
            stack.append(True)
        elif name == "NEWFALSE":
            stack.append(False)
        elif name in _INT_OPCODES:
            stack.append(int(arg))
        elif name in _BYTES_OPCODES:  # genops gives Python 2 strings as latin-1 str: back to their bytes
            stack.append(arg.encode("latin-1") if isinstance(arg, str) else bytes(arg))
        elif name in _STR_OPCODES:
            stack.append(str(arg))
        elif name == "EMPTY_DICT":
            stack.append({})
        elif name == "EMPTY_LIST":
            stack.append([])
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name == "TUPLE":
            stack.append(tuple(self.pop_mark()))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            items = [self.pop() for _ in range(n)][::-1]
            stack.append(tuple(items))
        elif name in ("APPEND", "APPENDS"):
            items = [self.pop()] if name == "APPEND" else self.pop_mark()
            target = self.top()
            if type(target) is not list:
                raise self.corrupt(f"{name} on {_kind(target)} instead of a list")
            target.extend(items)
        elif name in ("SETITEM", "SETITEMS"):
            if name == "SETITEM":
                value, key = self.pop(), self.pop()
                items = [key, value]
            else:
                items = self.pop_mark()
            target = self.top()
            if type(target) is not dict:
                raise self.corrupt(f"{name} on {_kind(target)} instead of a dict")
            if len(items) % 2:
                raise self.corrupt(f"{name} with an odd number of items")
            for key, value in zip(items[::2], items[1::2]):
                if type(key) not in (bytes, str, int):
                    raise self.corrupt(f"a dict key that is {_kind(key)}")
                target[key] = value
        elif name in _PUT_OPCODES or name == "MEMOIZE":
            index = len(self.memo) if name == "MEMOIZE" else arg
            if type(index) is not int or index < 0:
                raise self.corrupt(f"memo index {index!r}")
            self.memo[index] = self.top()
        elif name in _GET_OPCODES:
            if arg not in self.memo:
                raise self.corrupt(f"memo index {arg!r} read before it was written")
            stack.append(self.memo[arg])
        elif name in ("GLOBAL", "STACK_GLOBAL"):
            if name == "GLOBAL":
                module, _, attr = str(arg).partition(" ")
            else:
                attr, module = self.pop(), self.pop()
                if type(attr) is not str or type(module) is not str:
                    raise self.corrupt(f"STACK_GLOBAL of {_kind(module)} and {_kind(attr)}")
            qualified = f"{module}.{attr}"
            if qualified not in _ALLOWED_GLOBALS:
                raise UnsafeDataError(self.path, qualified, _ALLOWED_GLOBALS, hint=BINARY_HINT)
            stack.append(_Global(qualified))
        elif name == "REDUCE":
            args, func = self.pop(), self.pop()
            self.reduces += 1
            if self.reduces > _MAX_REDUCES:
                raise self.corrupt(f"more than {_MAX_REDUCES} REDUCE opcodes")
            stack.append(self.reduce(func, args))
        elif name == "BUILD":
            state = self.pop()
            target = self.pop()
            built = self.build(target, state)
            stack.append(built)
            for index, value in self.memo.items():  # the object was memoized before its state arrived
                if value is target:
                    self.memo[index] = built
        else:
            raise self.corrupt(f"the opcode {name}, which a CIFAR-10 batch does not use")

    def reduce(self, func: Any, args: Any) -> Any:
        if not isinstance(func, _Global):
            raise self.unsafe(f"a call of {_kind(func)}")
        if type(args) is not tuple:
            raise self.corrupt(f"call arguments that are {_kind(args)}")
        if func.name.endswith("._reconstruct"):
            if (len(args) == 3 and isinstance(args[0], _Global) and args[0].name == "numpy.ndarray"
                    and type(args[1]) is tuple and len(args[1]) == 1 and _is_int(args[1][0], 0)
                    and _is_text(args[2], "b")):
                return _PendingArray()
            raise self.unsafe(f"numpy's _reconstruct called with {len(args)} arguments other than "
                              "(numpy.ndarray, (0,), b'b')")
        if func.name == "numpy.dtype":
            if len(args) == 3 and _is_text(args[0], "u1") and _is_flag(args[1], False) and _is_flag(args[2], True):
                return _PendingDtype()
            found = _kind(args[0]) if args else "no arguments"
            raise self.unsafe(f"numpy.dtype({found}): only uint8 ('u1') arrays are accepted — an object or "
                              "structured dtype would let the file's bytes be used as memory pointers")
        raise self.unsafe(f"a call of {func.name}")

    def build(self, target: Any, state: Any) -> Any:
        if isinstance(target, _PendingDtype):
            expected = (3, "|", None, None, None, -1, -1, 0)
            if (type(state) is tuple and len(state) == len(expected) and _is_int(state[0], 3)
                    and _is_text(state[1], "|") and all(v is None for v in state[2:5])
                    and _is_int(state[5], -1) and _is_int(state[6], -1) and _is_int(state[7], 0)):
                return _Uint8()
            raise self.unsafe("a numpy dtype state other than uint8's (3, '|', None, None, None, -1, -1, 0)")
        if isinstance(target, _PendingArray):
            return self.array(state)
        raise self.unsafe(f"setting the state (BUILD) of {_kind(target)}")

    def array(self, state: Any) -> np.ndarray:
        if type(state) is not tuple or len(state) != 5 or not _is_int(state[0], 1):
            raise self.unsafe(f"a numpy array state that is {_kind(state)}, not (1, shape, dtype, fortran, bytes)")
        _, shape, dtype, fortran, payload = state
        if not isinstance(dtype, _Uint8):
            raise self.unsafe(f"a numpy array whose dtype is {_kind(dtype)}, not uint8")
        if (type(shape) is not tuple or not 1 <= len(shape) <= 2
                or not all(type(d) is int and 0 <= d <= MAX_ROWS * _PIXELS for d in shape)):
            raise self.corrupt(f"a numpy array of shape {_kind(shape)}; expected 1 or 2 non-negative sizes")
        size = math.prod(shape)
        if size > MAX_ROWS * _PIXELS:
            raise self.corrupt(f"a numpy array of shape {shape}, larger than {MAX_ROWS} rows of {_PIXELS} bytes")
        if not (_is_flag(fortran, False) or _is_flag(fortran, True)):
            raise self.corrupt(f"a numpy array whose Fortran-order flag is {_kind(fortran)}")
        if type(payload) is not bytes:
            raise self.unsafe(f"a numpy array whose data is {_kind(payload)}, not raw bytes")
        if len(payload) != size:
            raise self.corrupt(f"a numpy array of shape {shape} with {len(payload)} data bytes, expected {size}")
        flat = np.frombuffer(payload, dtype=np.uint8)
        if fortran and len(shape) == 2:
            return np.ascontiguousarray(flat.reshape(shape[::-1]).T)
        return flat.reshape(shape)


def _check_plain(value: Any, machine: _PickleMachine) -> None:
    """Every value reachable from ``value`` is a plain container, number, string, None or uint8 array."""
    seen: set[int] = set()
    todo = [value]
    while todo:
        item = todo.pop()
        if item is None or type(item) in (bool, int, bytes, str):
            continue
        if type(item) is np.ndarray and item.dtype == np.uint8:
            continue
        if type(item) in (list, tuple, dict):
            if id(item) in seen:
                continue
            seen.add(id(item))
            todo.extend(item.values() if type(item) is dict else item)
            continue
        raise machine.corrupt(f"it holds {_kind(item)}")


def _parse_pickle(path: Path) -> Any:
    machine = _PickleMachine(_read_bytes(path), path)
    value = machine.run()
    _check_plain(value, machine)
    return value


def restricted_unpickle(path: str | Path) -> Any:
    """The value pickled in ``path``, read without executing anything in the file.

    Accepts only dicts, lists, tuples, ints, booleans, None, byte strings (Python 2
    strings come back as ``bytes``, as with ``encoding="bytes"``), str, and uint8
    numpy arrays of 1 or 2 dimensions in numpy's own pickle form (read-only arrays
    over the file's bytes). Raises :class:`UnsafeDataError` for anything that would
    call or build another object (any other global, dtype or object-building opcode)
    and :class:`DataRootError` for a truncated, corrupt or oversized pickle.
    """
    return _parse_pickle(Path(path))


def _read_bytes(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise DataRootError(path, f"a CIFAR10 file of {size} bytes, larger than {MAX_FILE_BYTES} "
                                      f"({MAX_ROWS} images)", CIFAR10_LAYOUT)
        return path.read_bytes()
    except FileNotFoundError as error:
        raise DataRootError(path, "missing CIFAR10 file", CIFAR10_LAYOUT) from error
    except OSError as error:
        raise DataRootError(path, f"unreadable CIFAR10 file ({error})", CIFAR10_LAYOUT) from error


def _text(value: Any) -> str:
    return value.decode("latin1") if isinstance(value, bytes) else str(value)


def _cifar_dict(value: Any, path: Path, allowed: tuple[str, ...], required: tuple[str, ...]) -> dict[str, Any]:
    """``value`` as a str-keyed dict with keys among ``allowed`` (bytes keys decoded as latin-1)."""
    def bad(problem: str) -> DataRootError:
        return DataRootError(path, f"not a CIFAR-10 batch ({problem})", CIFAR10_LAYOUT, hint=BINARY_HINT)

    if type(value) is not dict:
        raise bad(f"expected a pickled dict, found {_kind(value)}")
    entry: dict[str, Any] = {}
    for key, item in value.items():
        if type(key) not in (bytes, str):
            raise bad(f"a key that is {_kind(key)}")
        name = _text(key)
        if name not in allowed:
            raise bad(f"unexpected key {name[:40]!r}; expected keys among {', '.join(allowed)}")
        if name in entry:
            raise bad(f"the key {name!r} twice")
        entry[name] = item
    missing = [name for name in required if name not in entry]
    if missing:
        raise bad(f"no {', '.join(repr(m) for m in missing)} entry")
    return entry


def _text_list(value: Any) -> bool:
    return type(value) is list and all(type(v) in (bytes, str) for v in value)


def _read_py_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    entry = _cifar_dict(restricted_unpickle(path), path, ("batch_label", "labels", "data", "filenames"),
                        ("data", "labels"))
    data, labels = entry["data"], entry["labels"]

    def bad(problem: str) -> DataRootError:
        return DataRootError(path, problem, CIFAR10_LAYOUT, hint=BINARY_HINT)

    if type(data) is not np.ndarray or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        raise bad(f"expected 'data' as uint8 N x {_PIXELS}, found {_kind(data)}")
    n = data.shape[0]
    if type(labels) is not list:
        raise bad(f"expected 'labels' as a list of {n} ints in 0-{_NUM_CLASSES - 1}, found {_kind(labels)}")
    if len(labels) != n:
        raise bad(f"expected {n} labels (one per 'data' row), found {len(labels)}")
    for i, label in enumerate(labels):
        if type(label) is not int or not 0 <= label < _NUM_CLASSES:
            raise bad(f"expected 'labels' as ints in 0-{_NUM_CLASSES - 1}, found {_kind(label)} at index {i}")
    if "batch_label" in entry and type(entry["batch_label"]) not in (bytes, str):
        raise bad(f"expected 'batch_label' as a string, found {_kind(entry['batch_label'])}")
    if "filenames" in entry and (not _text_list(entry["filenames"]) or len(entry["filenames"]) != n):
        raise bad(f"expected 'filenames' as a list of {n} strings, found {_kind(entry['filenames'])}")
    return data, np.array(labels, dtype=np.int64).reshape(n)


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


def _py_class_names(meta_path: Path) -> list[str]:
    meta = _cifar_dict(restricted_unpickle(meta_path), meta_path,
                       ("label_names", "num_cases_per_batch", "num_vis"), ("label_names",))
    names = meta["label_names"]
    if not _text_list(names) or len(names) != _NUM_CLASSES:
        found = _kind(names)
        raise DataRootError(meta_path, f"expected 'label_names' as a list of {_NUM_CLASSES} strings, found {found}",
                            CIFAR10_LAYOUT, hint=BINARY_HINT)
    for field in ("num_cases_per_batch", "num_vis"):
        if field in meta and type(meta[field]) is not int:
            raise DataRootError(meta_path, f"expected {field!r} as an int, found {_kind(meta[field])}",
                                CIFAR10_LAYOUT, hint=BINARY_HINT)
    return [_text(name) for name in names]


def _class_names(folder: Path, fmt: str) -> list[str]:
    if fmt == "py":
        meta_path = folder / "batches.meta"
        if not meta_path.is_file():
            return list(CIFAR10_CLASSES)
        return _py_class_names(meta_path)
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


def _refuse_existing(folder: Path) -> None:
    if folder.exists() or folder.is_symlink():
        raise FileExistsError(
            f"{folder} already exists; refusing to overwrite a data root (remove it, or choose another root)")


def write_cifar10_bin(root: str | Path, train: ImageSet, test: ImageSet,
                      classes: Sequence[str] = CIFAR10_CLASSES) -> Path:
    """Write ``train``/``test`` (uint8 N x 3 x 32 x 32, labels < 256) as ``root/cifar-10-batches-bin``:
    five ``data_batch_i.bin`` + ``test_batch.bin`` of 1-label-byte + 3072-pixel-byte records and
    ``batches.meta.txt`` — the official binary layout, readable by :func:`load_cifar10` (no pickle).

    All or nothing: the files are written to a temporary folder beside it, which is renamed into
    place only once complete. An existing ``cifar-10-batches-bin`` is never overwritten
    (:class:`FileExistsError`)."""
    folder = Path(root) / BIN_FOLDER
    for name, split in (("train", train), ("test", test)):
        if split.x.dtype != torch.uint8 or tuple(split.x.shape[1:]) != (3, 32, 32):
            raise ValueError(f"{name}: expected uint8 N x 3 x 32 x 32 images, got {split.x.dtype} {tuple(split.x.shape)}")
        if split.y.numel() and (int(split.y.min()) < 0 or int(split.y.max()) >= len(classes)):
            raise ValueError(f"{name}: labels must lie in [0, {len(classes)})")
    _refuse_existing(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{BIN_FOLDER}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    tmp.mkdir()  # mode 0o777 less the umask, like any folder the user makes

    def records(split: ImageSet, index: np.ndarray) -> bytes:
        x = split.x.reshape(split.x.shape[0], -1).numpy()[index]
        y = split.y.numpy().astype(np.uint8)[index]
        return np.concatenate([y[:, None], x], axis=1).tobytes()

    try:
        for i, chunk in enumerate(np.array_split(np.arange(train.x.shape[0]), len(_TRAIN_BATCHES))):
            (tmp / f"{_TRAIN_BATCHES[i]}.bin").write_bytes(records(train, chunk))
        (tmp / f"{_TEST_BATCHES[0]}.bin").write_bytes(records(test, np.arange(test.x.shape[0])))
        (tmp / "batches.meta.txt").write_text("\n".join(classes) + "\n\n")
        for child in tmp.iterdir():
            with open(child, "rb") as handle:
                os.fsync(handle.fileno())
        _refuse_existing(folder)
        os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def make_cifar10_stand_in(root: str | Path, n_train: int = 50_000, n_test: int = 10_000, seed: int = 0) -> Path:
    """A CIFAR-10-sized data root (default 50 000 + 10 000 images of 32 x 32, 10 classes) in the
    official binary layout, from the embedded classification set (:mod:`nnw.data.embedded`): for
    timing the spec profile where the real CIFAR-10 cannot be downloaded. Not for certification.
    Written all or nothing; an existing ``root/cifar-10-batches-bin`` is refused (:class:`FileExistsError`)."""
    from nnw.data.embedded import CLASSIFICATION_SOURCES, embedded_classification

    _refuse_existing(Path(root) / BIN_FOLDER)  # before the minutes of rendering, not after
    train, test = embedded_classification(seed=seed, n_train=n_train, n_test=n_test, size=32, num_classes=10)
    return write_cifar10_bin(root, train, test, classes=CLASSIFICATION_SOURCES[:10])
