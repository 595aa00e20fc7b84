"""The Tracker's use cases (NNW-TEC §5.2, IEEE 3304): detect, decode, match, verify integrity.

One rule per use case, applied by the ``nnw`` command (:mod:`nnw.cli`) and meant for the clauses
(:mod:`nnw.checks`), so that a command and a clause can never disagree:

* :func:`detect` — is the mark of a Key present? The method's ``detect``; a method that only
  decodes detects through its decoding (the payload read back without error: BER = 0, the spec's
  RTW rule); a method with neither cannot answer (:class:`CannotAnswer`).
* :func:`decode` — the payload, and :func:`decoded` its verdict: the method's CRC verdict
  (``Decoding.valid``) when it has one, else BER = 0 (no BER at all: decoded).
* :func:`match` — the best entry of a fingerprint database, named when it matches by the
  *method's own* rule (``method.match``, given the Key the values were extracted with: for NCT,
  one-sided Spearman on within-layer quantiles at 5%, the rule the fingerprint clauses apply
  through their blind runner); :func:`match_entries` applies it entry by entry when each entry
  was taken at its own positions (the command's databases). No correction for the number of
  entries: the unicity clause measures the cross-match rate of that very rule against its 5%.
* :func:`verify_integrity` / :func:`compare_traceability_data` — Algorithmic Integrity (§3):
  intact iff the Traceability Data read now are bit-identical to the reference's
  (``method.traceability_data``), the rule of ``nnw/checks/integrity.py``.

**Integrity of a model file.** ``nnw verify-integrity`` works on files: its reference
(``nnw fingerprint``) holds, as Traceability Data, the fingerprint values θ_I *and* the digest of
the file's stored tensors (:func:`weights_digest`: names, dtypes, shapes, bytes). Both parts go
through the same rule (bit-identical, :func:`verify_file_integrity`), so the verdict is the
clause's on θ_I plus the file's digest. The digest is part of the verdict, not an extra field:
θ_I is read from the model as loaded (float32), and a float64 re-save — the same weights, another
file — must be judged modified (``tests/test_untrusted_cli.py``), as must a change outside the N
positions. A clause has no file: it compares θ_I (or the method's data) only.

Errors: the method's own exceptions pass through (the command turns them into one line).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch


class CannotAnswer(Exception):
    """The method cannot answer the use case (e.g. it neither detects nor decodes)."""


# -- detect, decode --------------------------------------------------------------------------------
def detect(method, model, key, *, prepare: Callable | None = None):
    """The Detection of ``key``'s mark in ``model`` (see the module docstring)."""
    from nnw.methods.base import Detection

    tags = method.tags
    if getattr(tags, "detects", True):
        return method.detect(model, key, prepare=prepare)
    if getattr(tags, "decodes", False):
        dec = method.decode(model, key)
        if dec.ber is None:
            raise CannotAnswer(f"{method.name} neither detects nor reports a bit error rate when decoding")
        return Detection(present=bool(float(dec.ber) == 0.0), score=1.0 - float(dec.ber), threshold=1.0)
    raise CannotAnswer(f"{method.name} is an active method that declares neither detect nor decode: its "
                       "mark cannot be looked for")


def decoded(dec) -> bool:
    """A Decoding's verdict: the CRC's (``valid``) when the method has one, else BER = 0."""
    if dec.valid is not None:
        return bool(dec.valid)
    return dec.ber is None or dec.ber == 0.0


def decode(method, model, key):
    """(the Decoding of ``key``'s payload in ``model``, its verdict :func:`decoded`)."""
    if not method.tags.decodes:
        raise CannotAnswer(f"{method.name} carries no payload bits: it detects, it does not decode")
    dec = method.decode(model, key)
    return dec, decoded(dec)


# -- match -----------------------------------------------------------------------------------------
def accepts_key(fn) -> bool:
    """Does a matcher take the protocol's ``key`` (one written before it does not)?"""
    import inspect

    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "key" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def match(method, fingerprint: torch.Tensor, database: Mapping[str, torch.Tensor], *,
          key=None) -> tuple[str | None, float]:
    """The best entry of ``database`` for ``fingerprint`` by the method's own rule: (name or None,
    score). ``key``: the Key the values were extracted with, passed to a matcher that takes it (a
    copy: the method may not change the caller's Key), as the clauses' blind runner does."""
    if key is None or not accepts_key(method.match):
        return method.match(fingerprint, database)
    import copy

    return method.match(fingerprint, database, key=key.copy() if hasattr(key, "copy") else copy.deepcopy(key))


@dataclass(frozen=True)
class MatchEntry:
    name: str
    score: float
    matches: bool          # the entry alone matches by the method's rule
    values: int            # fingerprint values compared


def match_entries(method, model, entries: Mapping[str, Any]) -> tuple[MatchEntry | None, list[MatchEntry]]:
    """Match ``model`` against reference Keys each read at their own positions: each entry is
    scored by :func:`match` on a database of itself; the best entry (highest score, then name) is
    the answer, a match when it matches. Returns (the match or None, every entry, best first)."""
    rows = []
    for name, key in entries.items():
        fp = method.extract(model, key)
        found, score = match(method, fp, {name: key.tensors["original"]}, key=key)
        rows.append(MatchEntry(name, float(score), found is not None, int(fp.numel())))
    rows.sort(key=lambda e: (-(e.score if math.isfinite(e.score) else -2.0), e.name))
    best = rows[0] if rows and rows[0].matches else None
    return best, rows


# -- verify integrity ------------------------------------------------------------------------------
@dataclass(frozen=True)
class IntegrityComparison:
    intact: bool
    values: int
    changed_values: int
    max_abs_change: float


def compare_traceability_data(reference: torch.Tensor, now: torch.Tensor) -> IntegrityComparison:
    """Algorithmic Integrity (NNW-TEC §3): intact iff ``now`` equals ``reference`` bit for bit."""
    if now.shape != reference.shape:
        changed, max_change = int(reference.numel()), float("inf")
    else:
        diff = (now.double() - reference.double()).abs()
        changed, max_change = int((diff > 0).sum()), float(diff.max()) if diff.numel() else 0.0
    return IntegrityComparison(bool(now.shape == reference.shape and torch.equal(now, reference)),
                               int(reference.numel()), changed, max_change)


def verify_integrity(method, model, key, reference: torch.Tensor, *,
                     prepare: Callable | None = None) -> IntegrityComparison:
    """The Traceability Data of ``model`` read with ``key`` now, compared with ``reference``."""
    now = method.traceability_data(model, key, prepare=prepare).detach().cpu()
    return compare_traceability_data(reference, now)


def weights_digest(state: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """sha256 of a state dict: (overall hex digest, {tensor name: hex digest}).

    Per tensor: sha256 of ``name``, dtype, shape and the raw bytes of the contiguous CPU tensor.
    Overall: sha256 of the sorted ``name:digest`` lines. Bit-identical tensors <=> equal digests
    (up to sha256 collisions).
    """
    per: dict[str, str] = {}
    for name, t in state.items():
        t = t.detach().to("cpu").contiguous().reshape(-1)
        h = hashlib.sha256()
        h.update(f"{name}\0{str(t.dtype)}\0{list(state[name].shape)}\0".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
        per[name] = h.hexdigest()
    overall = hashlib.sha256("".join(f"{n}:{per[n]}\n" for n in sorted(per)).encode()).hexdigest()
    return overall, per


def stored_dtypes(state: Mapping[str, torch.Tensor]) -> dict[str, str]:
    return {n: str(t.dtype).replace("torch.", "") for n, t in state.items()}


@dataclass(frozen=True)
class FileIntegrity:
    """The comparison of a model file's stored tensors with a reference's record of them."""
    intact: bool                              # the overall digest is the reference's
    digest: str
    tensors: int
    changed_tensors: list[str] | None         # None: the reference has no per-tensor digests
    dtype_changes: dict[str, list[str]]


def verify_file_integrity(reference: Mapping[str, Any], state: Mapping[str, torch.Tensor]) -> FileIntegrity:
    """Compare the file's own tensors (dtypes as stored) with a reference's ``weights_sha256``,
    ``tensor_sha256`` and ``tensor_dtypes`` (see the module docstring)."""
    overall, per = weights_digest(state)
    want = reference.get("tensor_sha256") or {}
    changed = sorted(n for n in set(per) | set(want) if per.get(n) != want.get(n)) if want else None
    ref_dtypes = reference.get("tensor_dtypes") or {}
    dtypes = stored_dtypes(state)
    dtype_changes = {n: [ref_dtypes[n], dtypes[n]] for n in sorted(dtypes)
                     if n in ref_dtypes and ref_dtypes[n] != dtypes[n]}
    return FileIntegrity(overall == reference["weights_sha256"], overall, len(per), changed, dtype_changes)


__all__ = ["CannotAnswer", "detect", "decode", "decoded", "accepts_key", "match", "MatchEntry", "match_entries",
           "IntegrityComparison", "compare_traceability_data", "verify_integrity", "weights_digest", "stored_dtypes",
           "FileIntegrity", "verify_file_integrity"]
