"""Safe model and key file I/O: safetensors and weights-only PyTorch files, never code-executing pickles."""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

__all__ = [
    "ModelFileError",
    "atomic_output",
    "atomic_write_bytes",
    "atomic_write_text",
    "SAFETENSORS_SUFFIXES",
    "TORCH_SUFFIXES",
    "check_finite",
    "load_into",
    "load_state",
    "save_state",
]

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth", ".bin")
_CHECKPOINT_KEYS = ("state_dict", "model")
_LIST_LIMIT = 5


class ModelFileError(ValueError):
    """A model or key file is missing, corrupt, unsafe, or does not match what was expected."""


def _preview(items: list[str], limit: int = _LIST_LIMIT) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _prepare_for_save(state: Mapping[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU tensors, each owning its own storage (safetensors refuses shared storage)."""
    if not isinstance(state, Mapping):
        raise TypeError(f"save_state({path}): expected a mapping of str -> Tensor, got {type(state).__name__}")
    out: dict[str, torch.Tensor] = {}
    seen_storages: set[int] = set()
    for name, value in state.items():
        if not isinstance(name, str):
            raise TypeError(f"save_state({path}): tensor names must be str, got {type(name).__name__} {name!r}")
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"save_state({path}): value for {name!r} must be a torch.Tensor, got {type(value).__name__}"
            )
        t = value.detach().to("cpu").contiguous()
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        shared = ptr != 0 and ptr in seen_storages
        partial = storage.nbytes() != t.numel() * t.element_size()
        if shared or partial:
            t = t.clone()
        if t.untyped_storage().data_ptr() != 0:
            seen_storages.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path`` to write; on success it is fsynced and renamed
    onto ``path`` (all or nothing), on any exception it is removed and ``path`` is left untouched.

    The temporary file is created with mode 0o666 less the process umask (0644 under umask 022),
    so the output gets the permissions of any file the user writes, not ``mkstemp``'s 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)  # the kernel applies the umask
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover - 100 collisions of 48 random bits
        raise FileExistsError(f"{path}: could not create a temporary file beside it")
    try:
        mode = os.fstat(fd).st_mode & 0o777  # what the umask allows a new file
    finally:
        os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, mode)  # a writer may have replaced the file (safetensors writes it with 0600)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_output`); returns the path."""
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_output`); returns the path."""
    return atomic_write_bytes(path, text.encode(encoding))


def save_state(
    path: str | os.PathLike[str],
    state: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Atomically write ``state`` (and str->str ``metadata``) to a .safetensors file; returns the path."""
    path = Path(path)
    tensors = _prepare_for_save(state, path)
    meta: dict[str, str] | None = None
    if metadata is not None:
        meta = {}
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(
                    f"save_state({path}): metadata must map str -> str, got {type(k).__name__} -> {type(v).__name__} "
                    f"for {k!r}"
                )
            meta[k] = v
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def check_finite(state: Mapping[str, torch.Tensor], *, source: str = "<state>") -> None:
    """Raise ModelFileError naming the first tensor holding NaN or Inf values."""
    for name, t in state.items():
        if not (t.is_floating_point() or t.is_complex()):
            continue
        bad = int((~torch.isfinite(t)).sum().item())
        if bad:
            n_nan = int(torch.isnan(t).sum().item())
            raise ModelFileError(
                f"{source}: tensor {name!r} has {bad} non-finite value(s) of {t.numel()} "
                f"({n_nan} NaN, {bad - n_nan} Inf); expected only finite values "
                f"(pass allow_nonfinite=True to accept them)"
            )


def _load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            state = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path}: corrupt or truncated safetensors file ({exc})") from exc
    return state, metadata


_GLOBAL_PATTERNS = (
    re.compile(r"Unsupported global: GLOBAL ([\w.]+)"),
    re.compile(r"unsupported GLOBAL ([\w.]+)"),
    re.compile(r"GLOBAL ([\w.]+)"),
)


def _refusal_detail(exc: BaseException) -> str:
    """What torch's weights-only unpickler refused, without its advice (never ``weights_only=False``)."""
    msg = str(exc)
    for pattern in _GLOBAL_PATTERNS:
        m = pattern.search(msg)
        if m:
            return f"it asks for the global {m.group(1).rstrip('.')!r}, which would execute code when unpickled"
    m = re.search(r"WeightsUnpickler error:\s*([^\n]+)", msg)
    line = m.group(1) if m else ""
    line = re.split(r"\.\s+(?:Please|Re-running|Check|Alternatively)", line)[0].strip().rstrip(".")
    if not line or re.search(r"weights_only|trust", line, re.I):
        return "it holds an object other than tensors and plain containers"
    return f"it holds what the tensor-only reader does not accept: {line[:200]}"


def _load_torch(path: Path) -> object:
    try:
        return torch.load(str(path), weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as exc:
        raise ModelFileError(
            f"{path}: refused because loading it could execute code ({_refusal_detail(exc)}); only tensors and "
            f"plain containers are read from a PyTorch pickle, and nothing in the file was run. "
            f"Save the weights as .safetensors, which holds no code"
        ) from None
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, IndexError, TypeError, AttributeError) as exc:
        raise ModelFileError(
            f"{path}: corrupt or truncated PyTorch file ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None


def _as_tensor_mapping(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping):
        for ck in _CHECKPOINT_KEYS:
            inner = obj.get(ck)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping):
        raise ModelFileError(f"{path}: expected a mapping of tensor name -> Tensor (a state dict), got {type(obj).__name__}")
    state: dict[str, torch.Tensor] = {}
    for name, value in obj.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise ModelFileError(
                f"{path}: expected a mapping of tensor name -> Tensor (a state dict, or a checkpoint with a "
                f"'state_dict'/'model' entry), but key {name!r} holds {type(value).__name__}"
            )
        state[name] = value
    return state


def load_state(
    path: str | os.PathLike[str], *, allow_nonfinite: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load (state dict, metadata) from .safetensors or a weights-only .pt/.pth/.bin file, without running code."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: model file not found")
    if not path.is_file():
        raise ModelFileError(f"{path}: expected a model file, found a directory or special file")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        state, metadata = _load_safetensors(path)
    elif suffix in TORCH_SUFFIXES:
        state, metadata = _as_tensor_mapping(_load_torch(path), path), {}
    else:
        raise ModelFileError(
            f"{path}: unsupported model file type {suffix or '(no suffix)'!r}; expected one of "
            f"{', '.join(SAFETENSORS_SUFFIXES + TORCH_SUFFIXES)}"
        )
    if not allow_nonfinite:
        check_finite(state, source=str(path))
    return state, metadata


def _dtype_kind(dtype: torch.dtype) -> str:
    """bool, int (signed or unsigned), float or complex: loading may change precision within a kind
    (a float16 checkpoint into a float32 model) but never the kind (int8 or bool into float)."""
    if dtype == torch.bool:
        return "bool"
    if dtype.is_complex:
        return "complex"
    if dtype.is_floating_point:
        return "float"
    return "int"


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def load_into(
    model: torch.nn.Module,
    state: Mapping[str, torch.Tensor] | str | os.PathLike[str],
    *,
    source: str = "<state>",
) -> torch.nn.Module:
    """Load a state dict (or a model file) into ``model``; a clear ModelFileError if the architecture differs.

    Shapes must match, and so must each tensor's kind of dtype (bool, int, float, complex): an int8 or
    bool tensor is refused, never silently cast, for a float parameter (and the reverse). Float
    precision may differ (a float16 file loads into a float32 model)."""
    if isinstance(state, (str, os.PathLike)):
        if source == "<state>":
            source = str(state)
        state, _ = load_state(state)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    recast = [
        f"{k}: file {_dtype_name(state[k].dtype)} vs model {_dtype_name(expected[k].dtype)}"
        for k in expected
        if k in state and _dtype_kind(state[k].dtype) != _dtype_kind(expected[k].dtype)
    ]
    if missing or unexpected or mismatched or recast:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_preview(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_preview(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches ({len(mismatched)}): {_preview(mismatched)}")
        if recast:
            parts.append(
                f"dtype mismatches ({len(recast)}, not cast: an integer or bool tensor is not a float "
                f"weight, nor the reverse): {_preview(recast)}"
            )
        raise ModelFileError(
            f"{source} does not match the model architecture {type(model).__name__}: " + "; ".join(parts)
        )
    model.load_state_dict(dict(state), strict=True)
    return model
