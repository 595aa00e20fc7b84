"""Traceability methods: the protocol (:mod:`.base`), Key files (:mod:`.keys`), lookup by name
(:mod:`.registry`) and NNW-TEC's three technologies: NCT (§7.2), RTW (§7.3), TBW (§7.4).

The technologies are imported lazily (``nnw.methods.NCT`` works, but importing this package
does not import them), so that a third-party method only pays for the protocol.
"""
from __future__ import annotations

from typing import Any

from nnw.methods.base import (
    TASKS,
    Decoding,
    Detection,
    Key,
    KeyMismatchError,
    Prepare,
    Tags,
    TraceabilityMethod,
    default_prepare,
)
from nnw.methods.keys import KeyFileError, load_key, model_signature, save_key
from nnw.methods.registry import (
    MethodLoadError,
    UnknownMethodError,
    available_methods,
    get_method,
    load_method,
)

_LAZY = {"NCT": "nnw.methods.nct", "RTW": "nnw.methods.rtw", "TBW": "nnw.methods.tbw"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nnw.methods' has no attribute {name!r}")


__all__ = [
    "TASKS",
    "Prepare",
    "Tags",
    "Detection",
    "Decoding",
    "Key",
    "KeyMismatchError",
    "TraceabilityMethod",
    "default_prepare",
    "KeyFileError",
    "save_key",
    "load_key",
    "model_signature",
    "MethodLoadError",
    "UnknownMethodError",
    "get_method",
    "load_method",
    "available_methods",
    "NCT",
    "RTW",
    "TBW",
]
