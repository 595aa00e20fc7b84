"""The record every conformance check returns: one clause, its verdict and what was measured.

Verdicts: ``pass``, ``fail``, ``inconclusive`` and ``not assessed`` (the data cannot decide; see
:mod:`nnw.checks.decision`), ``not applicable`` (the method's tags exclude the clause, like ONNX's
"not supposed to implement it") and, added by the plugin, ``known failure`` (declared in the
submitter's ``--nnw-xfails-file``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PASS, FAIL, NOT_APPLICABLE, KNOWN_FAILURE = "pass", "fail", "not applicable", "known failure"
INCONCLUSIVE, NOT_ASSESSED = "inconclusive", "not assessed"  # neither counts as a pass


@dataclass
class ClauseResult:
    clause: str                       # e.g. "NNW-TEC §7.2.6 Robustness"
    title: str                        # the spec's words, e.g. "Robustness of NCT against magnitude pruning"
    verdict: str
    message: str
    measured: dict[str, Any] = field(default_factory=dict)
    threshold: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    table: str | None = None          # the spec table it reproduces, e.g. "10"
    decision: dict[str, Any] | None = None  # the rule, its statistic and its power (nnw.checks.decision)

    @property
    def passed(self) -> bool:
        return self.verdict in (PASS, NOT_APPLICABLE)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def modification_fields(mod) -> dict[str, Any]:
    """A clause record's Modification, as fields taken from the Modification object (never parsed
    back from its name): ``modification`` (the canonical name), ``modification_family`` and
    ``modification_params`` (the Parameter's values, spec names first; integral floats as ints).
    All ``None`` for a clause on unmodified models."""
    if mod is None:
        return {"modification": None, "modification_family": None, "modification_params": None}
    params = {str(k): int(v) if isinstance(v, float) and v.is_integer() else v for k, v in mod.params.items()}
    return {"modification": mod.name, "modification_family": mod.family, "modification_params": params}
