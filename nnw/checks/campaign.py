"""Blind detection: every detection of the population goes through one runner (the method is untrusted).

For one (task, method, configuration, Modification value) the *campaign* is the whole population
the standard prescribes (NNW-NNT: M unmarked models, each with D marked versions), read three ways:

- ``marked``: each of the M × D marked models, Modified, read with its own Key (robustness);
- ``null``: each of the M never-marked models, Modified the same way, read with ``null_keys`` Keys
  of other Actors — drawn on *another* model of the population (a donor) and, when the method can
  insert after training, inserted there (false alarms, IEEE 3304);
- ``cross``: each marked model read with null Keys of other Actors (cross-Actor interference),
  unmodified campaigns only.

The method never learns which kind of read it serves: the runner hands it a copy of the
model (checked unchanged after every call), in an order shuffled with a seed, through the same
call site, in a thread of its own (its stack shows the runner, not the clause). After each
call it checks the model unchanged, bit for bit (a method that changes what it is given fails with a clear
message) and that the Detection holds a finite score and a boolean verdict.

The same runner serves every other read of a model by the method (``operation``): fingerprint
extraction (``extract``), the Traceability Data of integrity verification (``traceability_data``)
and fingerprint matching (``match``: the query fingerprint and a database whose entries the method
sees under opaque names, in a shuffled order, each copied and checked unchanged after the call).
"""
from __future__ import annotations

import copy
import hashlib
import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from nnw import tracker
from nnw.methods.base import Key


class MethodMisbehaved(Exception):
    """The method under test broke the protocol (changed its input, returned a non-finite score, ...)."""


def model_digest(model: torch.nn.Module) -> str:
    """sha256 of a model's state (names, dtypes, bytes); other objects by their canonical JSON."""
    h = hashlib.sha256()
    if torch.is_tensor(model):
        _hash_tensor(h, model, shape=True)
        return h.hexdigest()
    if isinstance(model, Mapping) and any(torch.is_tensor(v) for v in model.values()):
        for name in sorted(model, key=str):
            h.update(repr(name).encode())
            h.update(model_digest(model[name]).encode())
        return h.hexdigest()
    if not hasattr(model, "state_dict"):
        import json

        h.update(json.dumps(model, sort_keys=True, default=repr).encode())
        return h.hexdigest()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        _hash_tensor(h, t)
    return h.hexdigest()


def _hash_tensor(h, t: torch.Tensor, shape: bool = False) -> None:
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    h.update(str(t.dtype).encode())
    if shape:  # a bare tensor (a fingerprint): its shape counts too
        h.update(repr(tuple(t.shape)).encode())
    t = t.contiguous()
    h.update((t.view(torch.uint8) if t.dtype == torch.bfloat16 else t).numpy())  # its buffer, not a copy


_BITS = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _bits(t: torch.Tensor) -> torch.Tensor:
    """``t`` as integers of its width: equal means bit for bit (NaN equals itself, -0.0 differs from 0.0)."""
    t = t.detach()
    return t.view(_BITS[t.element_size()]) if t.is_floating_point() else t


def _snapshot(obj: Any) -> Any:
    """What :func:`_unchanged` compares against: a module's state (names and bit-exact clones of its
    tensors); any other object's :func:`model_digest`."""
    if isinstance(obj, torch.nn.Module):
        return [(name, t.dtype, _bits(t).clone()) for name, t in obj.state_dict().items()]
    return model_digest(obj)


def _unchanged(obj: Any, snap: Any) -> bool:
    """Whether ``obj`` still holds exactly its snapshot: same state names, dtypes, shapes and bits
    (a module: tensor by tensor, ~3x cheaper than hashing it); else the same digest."""
    if not isinstance(snap, list):
        return model_digest(obj) == snap
    state = obj.state_dict()
    if len(state) != len(snap):
        return False
    for (name, t), (name0, dtype0, bits0) in zip(state.items(), snap):
        if name != name0 or t.dtype != dtype0 or t.shape != bits0.shape or t.device != bits0.device \
                or not torch.equal(_bits(t), bits0):
            return False
    return True


@dataclass
class Read:
    """One read to run: ``model`` read with ``key``; ``info`` is the suite's bookkeeping (never shown).

    For ``operation="match"``, ``model`` is the query fingerprint and ``key`` the database
    (``{the suite's name: reference fingerprint}``; the method sees opaque names) and
    ``extracted_with`` the Key every fingerprint of the read was extracted with (passed to
    ``method.match(..., key=)``: it tells the method the values' structure, nothing about the read)."""
    model: Any
    key: Any
    info: dict[str, Any] = field(default_factory=dict)
    extracted_with: Any = None


#: What the runner can ask of a method: detection (and decoding), fingerprint extraction, the
#: Traceability Data of integrity verification, fingerprint matching against a database.
OPERATIONS = ("detect", "extract", "traceability_data", "match")


def _as_bool(present: Any) -> bool | None:
    if isinstance(present, (bool, np.bool_)):
        return bool(present)
    if torch.is_tensor(present) and present.numel() == 1 and present.dtype == torch.bool:
        return bool(present.item())
    return None


def run_blind(method, reads: Sequence[Read], *, prepare: Callable | None = None, seed: int,
              decode: bool = False, operation: str = "detect", key_errors: bool = False) -> list[dict[str, Any]]:
    """Run every read through the method's ``operation`` (see :func:`_run_blind`) in a thread of its
    own, so that the method's call stack holds the runner and nothing of the clause that asked for it."""
    from concurrent.futures import ThreadPoolExecutor

    if operation not in OPERATIONS:
        raise ValueError(f"unknown blind operation {operation!r}; one of {OPERATIONS}")
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nnw-detection") as pool:
        return pool.submit(_run_blind, method, reads, prepare=prepare, seed=seed, decode=decode,
                           operation=operation, key_errors=key_errors).result()


def _run_blind(method, reads: Sequence[Read], *, prepare: Callable | None, seed: int,
               decode: bool = False, operation: str = "detect", key_errors: bool = False) -> list[dict[str, Any]]:
    """Run every read through ``method.<operation>``, blind: copies, in an order shuffled with
    ``seed``, each checked unchanged (bit for bit) after the call.

    Returns one row per read, in the order of ``reads``: its ``info`` plus, by operation,

    - ``detect``: ``detected``, ``score``, ``threshold``, ``p_value`` (and ``ber``/``actor``/
      ``payload_valid``/``ser`` when decoding);
    - ``extract``: ``fingerprint``; ``traceability_data``: ``data`` (CPU tensors, detached copies);
    - ``match``: ``matched`` (the suite's name of the entry, or None) and ``score``.

    With ``key_errors``, a :class:`~nnw.methods.base.KeyMismatchError` (a Key that no longer fits
    the model, e.g. after an attack changed its shapes) is recorded in the row (``key_fits``)
    instead of raised. Raises :class:`MethodMisbehaved` when the method changes what it is given or
    returns something invalid (a non-boolean verdict, a non-finite score, a name not in the database).
    """
    from nnw.methods.base import KeyMismatchError

    rng = random.Random(seed)
    order = list(range(len(reads)))
    rng.shuffle(order)
    snapshots: dict[int, Any] = {}
    copies: dict[int, Any] = {}
    rows: list[dict[str, Any] | None] = [None] * len(reads)
    for i in order:
        read = reads[i]
        ref = id(read.model)
        if ref not in snapshots:
            snapshots[ref] = _snapshot(read.model)
        work = copies.get(ref)
        if work is None:  # the method reads a copy; it is checked after every call, so it stays pristine
            work = copies[ref] = copy.deepcopy(read.model)
        try:
            if operation == "match":
                row = _match(method, work, read.key, rng, read.extracted_with)
            else:
                key = read.key.copy() if hasattr(read.key, "copy") else copy.deepcopy(read.key)
                row = _CALLS[operation](method, work, key, prepare, decode)
            if key_errors:
                row = {"key_fits": True, **row}
        except KeyMismatchError as exc:
            if not key_errors:
                raise
            row = {"key_fits": False, "detected": False, "score": None, "threshold": None, "p_value": None,
                   "note": f"key does not fit the attacked model: {exc}"}
        if not _unchanged(work, snapshots[ref]):
            raise MethodMisbehaved(f"{method.name} changed the model it was given to {_VERB[operation]}: "
                                   f"{_WHO[operation]} must read the model, never modify it")
        rows[i] = {**read.info, **row}
    return rows  # type: ignore[return-value]


_VERB = {"detect": "detect in", "extract": "extract a fingerprint from",
         "traceability_data": "read Traceability Data from", "match": "match (its query fingerprint)"}
_WHO = {"detect": "a detector", "extract": "fingerprint extraction",
        "traceability_data": "integrity verification", "match": "a matcher"}


def _detect(method, work, key, prepare, decode) -> dict[str, Any]:
    det = _detection(method, work, key, prepare)
    present = _as_bool(getattr(det, "present", None))
    if present is None:
        raise MethodMisbehaved(f"{method.name}.detect returned present={getattr(det, 'present', None)!r}: "
                               "a Detection's verdict must be a bool")
    score = _finite(det.score, f"{method.name}.detect")
    row = {"detected": present, "score": score,
           "threshold": None if det.threshold is None else float(det.threshold),
           "p_value": None if det.p_value is None else float(det.p_value)}
    pearson = (getattr(det, "details", None) or {}).get("pearson")
    if isinstance(pearson, (int, float)) and math.isfinite(pearson):  # NCT: recorded beside Spearman
        row["pearson"] = float(pearson)
    if decode:
        dec = method.decode(work, key)
        row.update(ber=None if dec.ber is None else float(dec.ber), actor=dec.actor_id, payload_valid=dec.valid)
        if "ser" in dec.details:
            row["ser"] = float(dec.details["ser"])
    return row


def _finite(score: Any, who: str) -> float:
    try:
        value = float(score)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise MethodMisbehaved(f"{who} returned a non-finite score ({score!r})")
    return value


def _tensor(out: Any, who: str) -> torch.Tensor:
    try:
        t = torch.as_tensor(out)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise MethodMisbehaved(f"{who} returned {type(out).__name__}, not a tensor ({exc})") from None
    return t.detach().cpu().clone()


def _extract(method, work, key, prepare, decode) -> dict[str, Any]:
    return {"fingerprint": _tensor(method.extract(work, key), f"{method.name}.extract")}


def _traceability(method, work, key, prepare, decode) -> dict[str, Any]:
    return {"data": _tensor(method.traceability_data(work, key, prepare=prepare),
                            f"{method.name}.traceability_data")}


_CALLS = {"detect": _detect, "extract": _extract, "traceability_data": _traceability}


def _match(method, query, database: Mapping[str, Any], rng: random.Random, key=None) -> dict[str, Any]:
    """``method.match(query, db)`` where db holds copies of the entries under opaque names, in a
    shuffled order; the entries are checked unchanged after the call (the query by the runner)."""
    names = list(database)
    rng.shuffle(names)
    opaque = {f"fp-{rng.getrandbits(64):016x}": name for name in names}
    entries = {o: copy.deepcopy(database[name]) for o, name in opaque.items()}
    digests = {o: model_digest(v) for o, v in entries.items()}
    out = tracker.match(method, query, entries, key=key)  # the Key as a copy, to a matcher that takes it
    try:
        found, score = out
    except (TypeError, ValueError):
        raise MethodMisbehaved(f"{method.name}.match returned {out!r}: a match is (name or None, score)") from None
    if any(model_digest(v) != digests[o] for o, v in entries.items()):
        raise MethodMisbehaved(f"{method.name} changed the fingerprint database it was given to match against: "
                               "a matcher must read the database, never modify it")
    if found is not None and (not isinstance(found, str) or found not in opaque):
        raise MethodMisbehaved(f"{method.name}.match returned {found!r}, which is not an entry of the database")
    return {"matched": None if found is None else opaque[found], "score": _finite(score, f"{method.name}.match")}


def _detection(method, model, key, prepare):
    """The method's Detection by the Tracker's rule (:func:`nnw.tracker.detect`: a decode-only
    method detects through its decoding); a method that cannot answer misbehaves."""
    try:
        return tracker.detect(method, model, key, prepare=prepare)
    except tracker.CannotAnswer as exc:
        neither = not (getattr(method.tags, "detects", True) or getattr(method.tags, "decodes", False))
        raise MethodMisbehaved(f"{exc}, so robustness and false alarms cannot pass" if neither else str(exc)) from None


def fail_on_misbehaviour(check):
    """A check whose method broke the protocol returns a failed clause naming what it did."""
    import functools

    @functools.wraps(check)
    def wrapper(zoo, method, task_name, *args, **kwargs):
        from nnw.checks.result import FAIL, ClauseResult

        try:
            return check(zoo, method, task_name, *args, **kwargs)
        except MethodMisbehaved as e:
            return ClauseResult("NNW-NNT protocol", f"{check.__name__} of {method.name} on {task_name}", FAIL,
                                f"the method broke the protocol: {e}")

    return wrapper


def population_key_seed(model_seed: int, key_seed: int) -> int:
    """The Key seed of the d-th marked version of model seed s: distinct over the population
    (model seed 0 keeps the profile's key seeds)."""
    return key_seed + 1000 * model_seed


def null_key_seed(model_seed: int, j: int) -> int:
    """Seeds of the Keys drawn for the null, disjoint from every marking Key of the population."""
    return 10_000_000 + 100_000 * model_seed + j


def null_keys(method, donor: torch.nn.Module, *, model_seed: int, count: int, config, start: int = 0) -> list[Key]:
    """``count`` Keys of other Actors, each drawn on ``donor`` (another model of the population) and,
    when the method inserts after training, inserted there (so a Key holds what its detector needs).
    ``start`` shifts the seeds (a profile's ``null_key_start``: a disjoint set of null Keys)."""
    can_embed = getattr(type(method), "embed", _base_embed()) is not _base_embed()
    keys = []
    for j in range(count):
        key = method.keygen(donor, seed=null_key_seed(model_seed, start + j), config=dict(config))
        if can_embed:
            method.embed(donor, key)  # fills the Key's insertion-time data; the marked copy is dropped
        keys.append(key)
    return keys


def _base_embed():
    from nnw.methods.base import TraceabilityMethod

    return TraceabilityMethod.embed
