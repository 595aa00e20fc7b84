"""Loading what a command is given: architectures (bounded before they are allocated), model
files (never running code), key files (checked), and the method (a file never selects code)."""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from nnw.cli.common import MAX_MODEL_PARAMS, CLIError

def build_arch(arch: str, arch_kw: Mapping[str, Any]):
    """The architecture, after counting its parameters on the meta device (at most MAX_MODEL_PARAMS)."""
    import torch

    from nnw.models import MODELS, build_model

    if arch not in MODELS:
        raise CLIError(f"unknown architecture {arch!r}; expected one of {sorted(MODELS)}")
    try:
        with torch.device("meta"):
            n_params = sum(p.numel() for p in build_model(arch, seed=0, **arch_kw).parameters())
        if n_params > MAX_MODEL_PARAMS:
            raise CLIError(f"{arch} with --arch-kw {dict(arch_kw)} has {n_params} parameters, above the bound "
                           f"{MAX_MODEL_PARAMS}")
        return build_model(arch, seed=0, **arch_kw)
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
        raise CLIError(f"cannot build {arch} with --arch-kw {dict(arch_kw)}: {exc}") from None


def load_model_and_state(path: str, arch: str, arch_kw: Mapping[str, Any]):
    """(model in eval mode, file metadata, the file's own state dict: dtypes as stored)."""
    from nnw.io import ModelFileError, load_into, load_state

    model = build_arch(arch, arch_kw)
    try:
        state, metadata = load_state(path)
    except ModelFileError as exc:
        raise CLIError(f"model file: {exc}") from None
    try:
        load_into(model, state, source=str(path))
    except ModelFileError as exc:
        raise CLIError(f"{exc} (check --arch/--arch-kw)") from None
    model.eval()
    return model, metadata, state


def load_model(path: str, arch: str, arch_kw: Mapping[str, Any]):
    """Build ``arch`` and load the model file into it; returns (model in eval mode, file metadata)."""
    model, metadata, _ = load_model_and_state(path, arch, arch_kw)
    return model, metadata


def read_key(path: str, what: str = "key file"):
    """A key file, checked (a built-in method's key against the key-config schema); CLIError naming it."""
    from nnw.methods.keys import KeyFileError, load_key

    try:
        return load_key(path)
    except KeyFileError as exc:
        raise CLIError(str(exc).replace("key file", what, 1)) from None


def _builtin_names() -> tuple[str, ...]:
    from nnw.methods.registry import BUILTINS

    return tuple(BUILTINS)


#: The built-in methods' names (nnw.methods.registry.BUILTINS), for the early check below.
_BUILTIN_NAMES = _builtin_names()


def _unknown_key_method(key_file: str) -> None:
    """Refuse, before any code is imported, a key whose ``method`` is neither built in nor installed.

    Reads only the key's safetensors header (JSON). Anything unreadable is left to :func:`read_key`,
    which reports it; :func:`resolve_method` checks the method again on the loaded key.
    """
    if not os.path.isfile(key_file):  # missing, a folder, a FIFO...: read_key says so (never blocks here)
        return
    try:
        with open(key_file, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 0 < size <= 100_000_000:
                return
            method = json.loads(fh.read(size))["__metadata__"]["method"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return
    if not isinstance(method, str) or method.upper() in {n.upper() for n in _BUILTIN_NAMES}:
        return
    from importlib.metadata import entry_points

    if ":" in method or method not in {ep.name for ep in entry_points(group="nnw.methods")}:
        raise CLIError(_unknown_method_message(method))


def _unknown_method_message(method: str) -> str:
    return (
        f"the key's method {method[:80]!r} is not a known method (built in: {', '.join(_BUILTIN_NAMES)}, or installed "
        "as an nnw.methods entry point); a key file never selects the code that runs: pass --method "
        "(a name, or package.module:Object)"
    )


def resolve_method(name: str | None, key=None):
    """The method: ``--method`` (any form, the caller's choice), else the key's ``method`` field, which
    must name a built-in or an installed entry point: a key file never selects code."""
    from nnw.methods.registry import MethodLoadError, UnknownMethodError, get_known_method, get_method

    if name is not None:
        try:
            return get_method(name)
        except MethodLoadError as exc:
            raise CLIError(str(exc)) from None
    if key is None:
        raise CLIError("no method given (--method)")
    try:
        return get_known_method(key.method)
    except UnknownMethodError:
        raise CLIError(_unknown_method_message(key.method)) from None
    except MethodLoadError as exc:
        raise CLIError(str(exc)) from None


def check_key(method, model, key, what: str = "key") -> None:
    from nnw.methods.base import KeyMismatchError

    try:
        method.check_key(model, key)
    except KeyMismatchError as exc:
        raise CLIError(f"{what} does not fit the model: {exc}") from None


def _has_embed(method) -> bool:
    from nnw.methods.base import TraceabilityMethod

    return getattr(type(method), "embed", None) is not TraceabilityMethod.embed


def _reference_info(key) -> dict[str, Any] | None:
    ref = key.config.get("reference")
    return ref if isinstance(ref, dict) else None



def fingerprinting_method():
    """The built-in method that writes and reads references (the first of the registry's built-ins
    whose tags say it ``fingerprints``)."""
    from nnw.methods.registry import BUILTINS, get_method

    for name in BUILTINS:
        method = get_method(name)
        if method.tags.fingerprints:
            return method
    raise CLIError("no built-in method fingerprints: references cannot be written or read")
