"""A method's identity is its code (issue: a changed method must never reuse an old one's models).

:func:`source_digest` is the sha256 of every ``.py`` file of the package that defines the method
(a third party's whole package; for the built-in methods, ``nnw/methods/``). Cache entries of
marked and Modified models are keyed by it, with the method's name, version and configuration,
so a method whose code changed — whatever its ``version`` says — gets new models.
"""
from __future__ import annotations

import hashlib
import importlib
import sys
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=None)
def _digest_of(module_name: str) -> str:
    h = hashlib.sha256()
    try:
        module = sys.modules.get(module_name) or importlib.import_module(module_name)
        if module_name.split(".")[0] == "nnw":  # built-in: the methods package, not the whole suite
            roots = [Path(module.__file__).parent]
        else:
            top = importlib.import_module(module_name.split(".")[0])
            roots = [Path(d) for d in getattr(top, "__path__", [])] or [Path(top.__file__)]
        files = sorted({f for r in roots for f in (r.rglob("*.py") if r.is_dir() else [r])})
        for f in files:
            h.update(f.name.encode())
            h.update(f.read_bytes())
    except (ImportError, TypeError, OSError, AttributeError):
        h.update(module_name.encode())
    return h.hexdigest()


def source_digest(method) -> str:
    """sha256 of the code that defines ``method`` (see the module docstring)."""
    return _digest_of(type(method).__module__)


def method_identity(method) -> dict:
    """What identifies a method in the model cache: name, version and code digest."""
    return {"method": method.name, "method_version": str(getattr(method, "version", "0")),
            "method_code": source_digest(method)}
