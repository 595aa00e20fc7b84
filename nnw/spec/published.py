"""The published rows beside a measured clause: the one lookup of the report, the terminal summary,
the figures and the cost records.

A clause record names its table; its rows are those of the table whose columns equal the
clause's own values: the model (column ``model``: the clause's task), each configuration value
the table has a column for (``alpha``, ``lam``, ``rho``, ...), and what the caller adds (the
Modification Parameter, the method of Table 23).
"""
from __future__ import annotations

from typing import Any, Mapping

from nnw.spec.tables import SpecTableError, published_rows, table_columns

SPEC_VERSION = "NNW-TEC-V1.0"


def clause_filters(table: str | int | None, *, task: str | None = None, config: Mapping[str, Any] | None = None,
                   version: str = SPEC_VERSION, **where: Any) -> dict[str, Any] | None:
    """The column filters of ``table`` for a clause (``None``: no such table, or ``where`` names a
    column it does not have)."""
    if not table or not str(table).isdigit():
        return None
    try:
        columns = table_columns(table, version)
    except SpecTableError:
        return None
    if any(k not in columns for k in where):
        return None
    filters = dict(where)
    if "model" in columns and task:
        filters.setdefault("model", task)
    for k, v in (config or {}).items():
        if k in columns:
            filters.setdefault(k, v)
    return filters


def clause_rows(table: str | int | None, *, task: str | None = None, config: Mapping[str, Any] | None = None,
                version: str = SPEC_VERSION, **where: Any) -> list[dict[str, Any]]:
    """The published rows of ``table`` matching a clause (see the module docstring); ``[]`` when none."""
    filters = clause_filters(table, task=task, config=config, version=version, **where)
    if filters is None:
        return []
    try:
        return published_rows(str(table), version, **filters)
    except (KeyError, ValueError):
        return []


__all__ = ["clause_filters", "clause_rows"]
