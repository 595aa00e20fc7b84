"""Content-addressed cache of trained and marked models, safe for concurrent pytest-xdist workers.

An entry lives at ``<root>/<key[:2]>/<key>/`` and holds ``state.safetensors`` (the weights; possibly no
tensors at all) and ``record.json`` (the spec, a JSON record of results, the sha256 and size of the
weights file, the creation time). Entries are written to a temporary directory under ``<root>/tmp`` and
published with one atomic ``os.rename``; a per-key ``filelock.FileLock`` makes exactly one process build
an entry while the others wait and then load it. Every read verifies the checksum first: a corrupt or
truncated entry is logged, removed and rebuilt, never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, overload

import torch
from filelock import FileLock, Timeout
from safetensors.torch import load as _st_load

import nnw
from nnw.io import save_state

__all__ = ["CODE_VERSION", "ENV_VAR", "ModelCache", "cache_key", "canonical_json", "code_version"]

#: Bump whenever a training recipe or anything else that changes cached results changes.
CODE_VERSION = "1"
ENV_VAR = "NNW_CACHE_DIR"
STATE_FILE = "state.safetensors"
RECORD_FILE = "record.json"
_FORMAT = 1

log = logging.getLogger("nnw.cache")

Entry = tuple[dict[str, torch.Tensor], dict[str, Any]]


def code_version() -> str:
    """The version string mixed into every key: package version plus CODE_VERSION."""
    return f"{nnw.__version__}+cache{CODE_VERSION}"


def _canonical(value: Any, where: str) -> Any:
    """A JSON-native copy of ``value`` (tuples become lists); TypeError naming ``where`` otherwise."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{where} is a non-finite float ({value!r}); only finite floats are JSON-able")
        return float(value)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where} has a non-str key {k!r} ({type(k).__name__}); JSON keys must be str")
            out[k] = _canonical(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(
        f"{where} is not JSON-able: got {type(value).__name__} {value!r:.80}; "
        f"expected str, int, float, bool, None, list, tuple or dict (convert numpy/tensor values first)"
    )


def canonical_json(value: Any, *, name: str = "spec") -> str:
    """Canonical JSON: sorted keys, no whitespace, shortest float repr; TypeError for anything else."""
    return json.dumps(
        _canonical(value, name), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def cache_key(spec: Mapping[str, Any]) -> str:
    """sha256 hex digest of the canonical JSON of ``spec`` together with :func:`code_version`."""
    if not isinstance(spec, Mapping):
        raise TypeError(f"cache_key: expected a mapping spec, got {type(spec).__name__}")
    canonical = _canonical(spec, "spec")
    payload = canonical_json({"code_version": code_version(), "spec": canonical}, name="spec")
    return hashlib.sha256(payload.encode("ascii")).hexdigest()


def _default_root() -> Path:
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else Path("~/.cache/nnw")


def _fresh_dir(parent: Path, prefix: str) -> Path:
    """A new, empty directory under ``parent`` with mode 0o777 less the umask (``mkdtemp`` makes 0700,
    which would make a cache shared through NNW_CACHE_DIR unreadable to the rest of the group)."""
    for _ in range(100):
        path = parent / f"{prefix}{secrets.token_hex(6)}"
        try:
            path.mkdir(mode=0o777)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"nnw cache: could not create a fresh directory under {parent}")  # pragma: no cover


class _CorruptEntry(Exception):
    """An entry directory exists but cannot be trusted."""


class ModelCache:
    """Content-addressed store of (state dict, JSON record) pairs keyed by :func:`cache_key`."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root if root is not None else _default_root()).expanduser().absolute()

    def __repr__(self) -> str:
        return f"ModelCache({str(self.root)!r})"

    # -- paths -----------------------------------------------------------------------------------
    def _entry_dir(self, key: str) -> Path:
        return self.root / key[:2] / key

    def path_for(self, spec: Mapping[str, Any]) -> Path:
        """Directory of the entry for ``spec`` (it may not exist)."""
        return self._entry_dir(cache_key(spec))

    def _lock(self, key: str) -> FileLock:
        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        return FileLock(str(locks / f"{key}.lock"))

    def _tmp_dir(self) -> Path:
        tmp = self.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return tmp

    # -- reading ---------------------------------------------------------------------------------
    def _read(self, key: str) -> Entry | None:
        """The verified entry, None if absent; _CorruptEntry if present but untrustworthy."""
        entry = self._entry_dir(key)
        if not entry.exists():
            return None
        record_path, state_path = entry / RECORD_FILE, entry / STATE_FILE
        try:
            meta = json.loads(record_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise _CorruptEntry(f"{record_path} is missing") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _CorruptEntry(f"{record_path} does not parse ({exc})") from None
        except RecursionError:  # e.g. [[[[...]]]] nested deeper than the JSON decoder recurses
            raise _CorruptEntry(f"{record_path} is nested too deeply to parse") from None
        if not isinstance(meta, dict) or not {"key", "record", "state_sha256", "state_size"} <= meta.keys():
            raise _CorruptEntry(f"{record_path} lacks the fields key, record, state_sha256, state_size")
        if meta["key"] != key:
            found = meta["key"][:80] if isinstance(meta["key"], str) else type(meta["key"]).__name__
            raise _CorruptEntry(f"{record_path} is for key {found!r}, expected {key!r}")
        size, sha256 = meta["state_size"], meta["state_sha256"]
        if type(size) is not int or size < 0 or not isinstance(sha256, str) or not isinstance(meta["record"], dict):
            raise _CorruptEntry(f"{record_path} has a state_size, state_sha256 or record of the wrong type")
        try:
            data = state_path.read_bytes()
        except FileNotFoundError:
            raise _CorruptEntry(f"{state_path} is missing") from None
        except OSError as exc:
            raise _CorruptEntry(f"{state_path} cannot be read ({exc})") from None
        if len(data) != size:
            raise _CorruptEntry(f"{state_path} has {len(data)} bytes, expected {size} (truncated?)")
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256:
            raise _CorruptEntry(f"{state_path} sha256 {digest[:16]}... does not match {sha256[:16]}...")
        try:
            state = _st_load(data)
        except Exception as exc:  # checksum matched, so this is a writer bug; still never use it
            raise _CorruptEntry(f"{state_path} does not parse as safetensors ({exc})") from None
        return state, meta["record"]

    def _discard(self, key: str, reason: str) -> None:
        """Move a bad entry out of the way atomically, then delete it. Call with the key's lock held."""
        entry = self._entry_dir(key)
        log.warning("nnw cache: entry %s is corrupt (%s); removing it and rebuilding", entry, reason)
        trash = Path(tempfile.mkdtemp(prefix=f"trash-{key[:12]}-", dir=self._tmp_dir()))
        try:
            os.rename(entry, trash / "entry")
        except FileNotFoundError:
            pass
        shutil.rmtree(trash, ignore_errors=True)

    def get(self, spec: Mapping[str, Any]) -> Entry | None:
        """The verified (state, record) for ``spec``, or None; a corrupt entry is logged, removed, and None."""
        key = cache_key(spec)
        try:
            return self._read(key)
        except _CorruptEntry:
            pass
        with self._lock(key):
            try:
                return self._read(key)
            except _CorruptEntry as exc:
                self._discard(key, str(exc))
                return None

    def contains(self, spec: Mapping[str, Any]) -> bool:
        """Whether a valid (checksum-verified) entry exists for ``spec``."""
        try:
            return self._read(cache_key(spec)) is not None
        except _CorruptEntry:
            return False

    # -- writing ---------------------------------------------------------------------------------
    def _publish(self, key: str, spec: Mapping[str, Any], state: Mapping[str, torch.Tensor], record: Any) -> None:
        tmp = _fresh_dir(self._tmp_dir(), f"{key[:12]}-{os.getpid()}-")
        try:
            state_path = save_state(tmp / STATE_FILE, state, metadata={"nnw_cache_key": key})
            data = state_path.read_bytes()
            meta = {
                "format": _FORMAT,
                "key": key,
                "code_version": code_version(),
                "spec": _canonical(spec, "spec"),
                "record": record,
                "state_sha256": hashlib.sha256(data).hexdigest(),
                "state_size": len(data),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "created_unix": time.time(),
            }
            record_path = tmp / RECORD_FILE
            with open(record_path, "w", encoding="utf-8") as fh:
                json.dump(meta, fh, indent=1, sort_keys=True, allow_nan=False)
                fh.flush()
                os.fsync(fh.fileno())
            final = self._entry_dir(key)
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(tmp, final)
            except OSError:
                if not final.exists():
                    raise
                log.info("nnw cache: entry %s appeared meanwhile; keeping it, discarding ours", final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @overload
    def get_or_build(self, spec: Mapping[str, Any], build: Callable[[], tuple[Mapping[str, torch.Tensor],
                     Mapping[str, Any]]], *, wait: Literal[True] = ...) -> Entry: ...

    @overload
    def get_or_build(self, spec: Mapping[str, Any], build: Callable[[], tuple[Mapping[str, torch.Tensor],
                     Mapping[str, Any]]], *, wait: bool) -> Entry | None: ...

    def get_or_build(
        self,
        spec: Mapping[str, Any],
        build: Callable[[], tuple[Mapping[str, torch.Tensor], Mapping[str, Any]]],
        *,
        wait: bool = True,
    ) -> Entry | None:
        """The cached (state, record) for ``spec``; built once (across processes) by ``build()`` if absent.

        ``wait=False``: return None instead of waiting when another process is building it."""
        key = cache_key(spec)
        name = spec.get("name", key[:12])
        try:
            hit = self._read(key)
        except _CorruptEntry:
            hit = None
        if hit is not None:
            return hit
        lock = self._lock(key)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if not wait:
                return None
            log.info("nnw cache: waiting for another process building %s ...", name)
            lock.acquire()
        try:
            try:
                hit = self._read(key)
            except _CorruptEntry as exc:
                self._discard(key, str(exc))
                hit = None
            if hit is not None:
                return hit
            log.info("nnw cache: building %s ...", name)
            t0 = time.perf_counter()
            result = build()
            if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], Mapping)):
                raise TypeError(
                    f"nnw cache: build() for {name} must return (state dict, record dict), got {type(result).__name__}"
                )
            state, record = result
            record = _canonical(record, "record")
            if not isinstance(record, dict):
                raise TypeError(f"nnw cache: build() for {name} must return a dict record, got {type(record).__name__}")
            self._publish(key, spec, state, record)
            log.info("nnw cache: %s done in %.1f s", name, time.perf_counter() - t0)
            try:
                stored = self._read(key)
            except _CorruptEntry as exc:
                raise RuntimeError(f"nnw cache: entry for {name} is unreadable right after writing it ({exc})") from None
            if stored is None:
                raise RuntimeError(f"nnw cache: entry for {name} vanished right after writing it ({self._entry_dir(key)})")
            return stored
        finally:
            lock.release()

    def clear(self) -> None:
        """Remove every entry and temporary directory (lock files stay: other processes may hold them)."""
        if not self.root.exists():
            return
        for child in self.root.iterdir():
            if child.name == "locks":
                continue
            if child.is_dir() and (child.name == "tmp" or len(child.name) == 2):
                shutil.rmtree(child, ignore_errors=True)
