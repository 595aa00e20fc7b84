"""The registry of the standard's clauses (``nnw/spec/clauses.json``) and a run's coverage of them.

Which clauses apply to a method follows its kind and declared operations (``applies``: ``active``,
``multi_mark``, ``fingerprints``, ``integrity``); an active method gets every mandatory active clause
whatever else it declares. The certificate's coverage table marks each clause, per method,
*evaluated* (with its verdicts), *not applicable* (with the standard's reason) or *not assessed*
(applicable, but no clause result was decided in this run).
"""
from __future__ import annotations

import json
from collections import Counter
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable


@lru_cache(maxsize=1)
def registry() -> list[dict[str, Any]]:
    return json.loads(resources.files("nnw.spec").joinpath("clauses.json").read_text())["clauses"]


def clause_id(prop: str, modification: str | None = None) -> str | None:
    """The registry id of a clause result (its property, and for robustness its Modification family)."""
    family = None if not modification else modification.split("(", 1)[0]
    for c in registry():
        if c["property"] == prop and c.get("family", family) == family:
            return c["id"]
    return None


def _applies(clause: dict[str, Any], tags: dict[str, Any], kind: str | None = None) -> bool:
    need = clause["applies"]
    if need == "active":  # the kind the method is certified as (nnw.cases.is_active), else its declared one
        return (kind or tags.get("kind")) == "active"
    return bool(tags.get(need))


def coverage(methods: Iterable[dict[str, Any]], clauses: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per method (certificate ``methods`` entries): every registry clause with its status."""
    out = {}
    for m in methods:
        rows = []
        for c in registry():
            ids = {c["id"], "overwriting"} if c["id"] == "robustness/overwriting" else {c["id"]}  # Figure 4 too
            mine = [r for r in clauses if r.get("method") == m["name"] and r.get("clause_id") in ids]
            row = {"id": c["id"], "section": c["section"], "mandatory": c["mandatory"]}
            if not _applies(c, m.get("tags", {}), m.get("certified_kind")):
                row.update(status="not applicable", reason=c["not_applicable"])
            elif any(r["verdict"] in ("pass", "fail", "known failure") for r in mine):
                row.update(status="evaluated", verdicts=dict(sorted(Counter(r["verdict"] for r in mine).items())))
            else:
                row.update(status="not assessed",
                           reason="no result in this run" if not mine else "every result undecided")
            rows.append(row)
        out[m["name"]] = rows
    return out


def missing_mandatory(cov: dict[str, list[dict[str, Any]]]) -> list[str]:
    return [f"{name}: {r['id']}" for name, rows in cov.items() for r in rows
            if r["mandatory"] and r["status"] == "not assessed"]
