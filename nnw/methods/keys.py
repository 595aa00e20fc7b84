"""Key files and model signatures.

A :class:`~nnw.methods.base.Key` is saved as one safetensors file: the tensors as safetensors
tensors, ``method``/``config``/``model_signature`` as JSON strings in the safetensors metadata.
Loading parses JSON and raw tensor bytes only, so a key file from an untrusted party executes no
code (unlike a pickle). Writes are atomic (temporary file + ``os.replace``). The runtime
``Key.cache`` is never written.

:func:`model_signature` fingerprints a model's *architecture* (parameter names and shapes), not
its values; methods use it to refuse a Key made for another architecture (KeyMismatchError).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from nnw.layers import weight_layers
from nnw.methods.base import Key

#: Version of the key-file layout, stored in the metadata.
KEY_FORMAT = "nnw-key/1"


class KeyFileError(ValueError):
    """A key file is missing, unreadable, or not an nnw key file."""


def model_signature(model: nn.Module) -> dict[str, Any]:
    """Architecture signature of ``model`` (JSON-able).

    n_params:          number of scalar parameters;
    layers_sha:        sha256 of the sorted (name, shape) pairs of all parameters;
    weight_layers:     ``[[name, shape], ...]`` of :func:`nnw.layers.weight_layers`, in order
                       (the index space of NCT, the candidate layers of RTW);
    n_weight_params:   number of scalars in those weight layers.
    """
    params = [(name, list(p.shape)) for name, p in model.named_parameters()]
    digest = hashlib.sha256(json.dumps(sorted(params), separators=(",", ":")).encode()).hexdigest()
    wl = [[name, list(p.shape)] for name, p in weight_layers(model).items()]
    return {
        "n_params": int(sum(p.numel() for p in model.parameters())),
        "layers_sha": digest,
        "weight_layers": wl,
        "n_weight_params": int(sum(p.numel() for p in weight_layers(model).values())),
    }


def to_jsonable(obj: Any, what: str = "config") -> Any:
    """Round-trip ``obj`` through JSON (tuples become lists); TypeError/ValueError if it is not JSON-able."""
    try:
        return json.loads(json.dumps(obj, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"Key {what} must be JSON-serializable (no tensors, no NaN): {exc}") from None


def save_key(path: str | os.PathLike[str], key: Key) -> Path:
    """Write ``key`` to ``path`` atomically (safetensors; JSON metadata). Returns the path."""
    if not isinstance(key, Key):
        raise TypeError(f"save_key expects an nnw Key, got {type(key).__name__}")
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    for name, t in key.tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"Key.tensors[{name!r}] must be a torch.Tensor, got {type(t).__name__}")
        tensors[name] = t.detach().to("cpu").contiguous().clone()
    metadata = {
        "format": KEY_FORMAT,
        "method": str(key.method),
        "config": json.dumps(to_jsonable(key.config, "config"), sort_keys=True),
        "model_signature": json.dumps(to_jsonable(key.model_signature, "model_signature"), sort_keys=True),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def load_key(path: str | os.PathLike[str]) -> Key:
    """Read a key written by :func:`save_key`; :class:`KeyFileError` naming the file if it cannot."""
    path = Path(path)
    if not path.is_file():
        raise KeyFileError(f"key file {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as exc:  # safetensors raises several error types for corrupt files
        raise KeyFileError(f"key file {str(path)!r} is not a readable safetensors file: {exc}") from None
    if metadata.get("format") != KEY_FORMAT:
        raise KeyFileError(
            f"key file {str(path)!r} is not an nnw key file (metadata format "
            f"{metadata.get('format')!r}, expected {KEY_FORMAT!r})"
        )
    try:
        method = metadata["method"]
        config = json.loads(metadata["config"])
        signature = json.loads(metadata["model_signature"])
    except (KeyError, ValueError) as exc:
        raise KeyFileError(f"key file {str(path)!r} has corrupt metadata: {exc!r}") from None
    if not isinstance(config, dict) or not isinstance(signature, dict):
        raise KeyFileError(f"key file {str(path)!r}: config and model_signature must be JSON objects")
    return Key(method=method, config=config, tensors=tensors, model_signature=signature)


__all__ = ["KEY_FORMAT", "KeyFileError", "model_signature", "to_jsonable", "save_key", "load_key"]
