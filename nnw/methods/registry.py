"""Finding a traceability method by name (NNW-TEC §7.1: new technologies join the evaluation).

Three ways to name a method:

* a built-in: ``"NCT"`` (§7.2), ``"RTW"`` (§7.3), ``"TBW"`` (§7.4) — case-insensitive;
* an import path ``"package.module:Object"`` where ``Object`` (dotted attributes allowed) is a
  :class:`~nnw.methods.base.TraceabilityMethod` subclass (instantiated with no arguments), an
  instance, or a zero-argument factory returning an instance;
* a name registered by an installed package in the ``nnw.methods`` entry-point group, e.g. in
  its ``pyproject.toml``: ``[project.entry-points."nnw.methods"] MYMARK = "mypkg.mark:MyMark"``.

Every failure raises :class:`MethodLoadError` (a ``ValueError``) whose message names the method
and the cause; unknown names raise its subclass :class:`UnknownMethodError`, listing what is
available.

A *file* never selects code: a key's ``method`` field is resolved with :func:`get_known_method`,
which accepts only a built-in or an installed entry-point name, never an import path (a key naming
``os:abort`` must not import ``os`` and call ``abort``). Import paths are for the caller's own
choice: ``nnw --method``, ``pytest --nnw-method``, :func:`get_method` in code.
"""
from __future__ import annotations

import importlib
import inspect
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from nnw.methods.base import Tags, TraceabilityMethod

#: Entry-point group through which installed packages register methods.
ENTRY_POINT_GROUP = "nnw.methods"

#: Built-in methods: name -> import path.
BUILTINS: dict[str, str] = {
    "NCT": "nnw.methods.nct:NCT",
    "RTW": "nnw.methods.rtw:RTW",
    "TBW": "nnw.methods.tbw:TBW",
}


class MethodLoadError(ValueError):
    """A method could not be found, imported, or is not a TraceabilityMethod."""


class UnknownMethodError(MethodLoadError):
    """No built-in, entry point or import path of that name."""


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _as_method(obj: Any, origin: str) -> TraceabilityMethod:
    """Turn a loaded object (class, instance or factory) into a validated method instance."""
    if isinstance(obj, TraceabilityMethod):
        method = obj
    elif inspect.isclass(obj):
        if not issubclass(obj, TraceabilityMethod):
            raise MethodLoadError(
                f"{origin!r} is the class {obj.__module__}.{obj.__qualname__}, which does not subclass "
                "nnw.methods.base.TraceabilityMethod"
            )
        try:
            method = obj()
        except Exception as exc:
            raise MethodLoadError(f"{origin!r}: instantiating {obj.__qualname__}() failed: {exc!r}") from exc
    elif callable(obj):
        try:
            method = obj()
        except Exception as exc:
            raise MethodLoadError(f"{origin!r}: calling the factory {obj!r} failed: {exc!r}") from exc
        if not isinstance(method, TraceabilityMethod):
            raise MethodLoadError(
                f"{origin!r}: the factory returned {type(method).__name__}, not a TraceabilityMethod"
            )
    else:
        raise MethodLoadError(
            f"{origin!r} is a {type(obj).__name__}, not a TraceabilityMethod class, instance or factory"
        )
    for attr, typ in (("name", str), ("version", str), ("tags", Tags)):
        value = getattr(method, attr, None)
        if not isinstance(value, typ):
            raise MethodLoadError(
                f"{origin!r}: method attribute {attr!r} must be a {typ.__name__}, got {value!r}"
            )
    return method


def load_method(path: str) -> TraceabilityMethod:
    """Import ``"package.module:Object"`` and return the method it names."""
    if not isinstance(path, str) or path.count(":") != 1:
        raise MethodLoadError(f"method import path must look like 'package.module:Object', got {path!r}")
    module_name, _, attr_path = path.partition(":")
    if not module_name or not attr_path:
        raise MethodLoadError(f"method import path must look like 'package.module:Object', got {path!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise MethodLoadError(f"cannot import module {module_name!r} for method {path!r}: {exc!r}") from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise MethodLoadError(f"method {path!r}: {module_name!r} has no attribute {attr_path!r}") from None
    return _as_method(obj, path)


def available_methods() -> list[str]:
    """Names accepted by :func:`get_method`: the built-ins, then installed entry points (sorted)."""
    extra = sorted(set(_entry_points()) - set(BUILTINS))
    return list(BUILTINS) + extra


def get_method(name_or_path: str | TraceabilityMethod) -> TraceabilityMethod:
    """A method instance from a built-in name, an entry-point name, or an import path (an instance passes through)."""
    if isinstance(name_or_path, TraceabilityMethod):
        return name_or_path
    if not isinstance(name_or_path, str) or not name_or_path:
        raise MethodLoadError(f"a method name must be a non-empty string, got {name_or_path!r}")
    if ":" in name_or_path:
        return load_method(name_or_path)
    builtin = {k.upper(): v for k, v in BUILTINS.items()}.get(name_or_path.upper())
    if builtin is not None:
        return load_method(builtin)
    eps = _entry_points()
    if name_or_path in eps:
        ep = eps[name_or_path]
        try:
            obj = ep.load()
        except Exception as exc:
            raise MethodLoadError(
                f"entry point {name_or_path!r} ({ep.value}) of group {ENTRY_POINT_GROUP!r} failed to load: {exc!r}"
            ) from exc
        return _as_method(obj, f"{name_or_path} ({ep.value})")
    raise UnknownMethodError(
        f"unknown traceability method {name_or_path!r}; available: {available_methods()} "
        "(or give an import path 'package.module:Object')"
    )


def get_known_method(name: str) -> TraceabilityMethod:
    """The method named ``name`` among the built-ins and the installed ``nnw.methods`` entry points only.

    For names that come from files (a key's ``method`` field): no import path, no module of the
    working directory, nothing a file could point at. :class:`UnknownMethodError` otherwise.
    """
    if not isinstance(name, str) or not name:
        raise UnknownMethodError(f"a method name must be a non-empty string, got {name!r}")
    builtin = {k.upper(): k for k in BUILTINS}.get(name.upper())
    if builtin is not None:
        return load_method(BUILTINS[builtin])
    if ":" not in name and name in _entry_points():
        return get_method(name)
    raise UnknownMethodError(
        f"{name[:80]!r} is not a known method (built in: {list(BUILTINS)}; installed: "
        f"{sorted(set(_entry_points()) - set(BUILTINS))})"
    )


__all__ = [
    "ENTRY_POINT_GROUP",
    "BUILTINS",
    "MethodLoadError",
    "UnknownMethodError",
    "load_method",
    "get_method",
    "get_known_method",
    "available_methods",
]
