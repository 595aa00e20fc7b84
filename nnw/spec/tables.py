"""Loader for the spec's published result tables (``nnw/spec/<version>.json``).

Data layout (see ``nnw-tec-v1.0.json``): ``tables[<number>]`` has ``columns`` and ``rows``
(lists in column order, long format for the robustness tables) plus table-level metadata
(``method``, ``property``, ``modification``, ``param``, ``model``, ``config``, units, ``notes``).
Errors and impacts are percent as printed (eq. (1)/(2) multiplied by 100); BER is a fraction;
TBW's trigger-set share is ``share_percent``.
"""
from __future__ import annotations

import copy
import json
import math
from functools import lru_cache
from importlib import resources
from typing import Any

# spec version -> data file inside the nnw.spec package
SPEC_FILES: dict[str, str] = {"NNW-TEC-V1.0": "nnw-tec-v1.0.json"}


class SpecTableError(ValueError, KeyError):
    """Unknown spec version, table or column (a ValueError that ``except KeyError`` also catches)."""

    __str__ = ValueError.__str__  # plain message, not KeyError's repr-quoted one


@lru_cache(maxsize=None)
def _load(version: str) -> dict:
    try:
        name = SPEC_FILES[version]
    except KeyError:
        raise SpecTableError(f"unknown spec version {version!r}; known: {sorted(SPEC_FILES)}") from None
    data = json.loads(resources.files("nnw.spec").joinpath(name).read_text(encoding="utf-8"))
    if data.get("spec_version") != version:
        raise ValueError(f"{name} declares spec_version {data.get('spec_version')!r}, expected {version!r}")
    for num, table in data["tables"].items():
        width = len(table["columns"])
        for row in table["rows"]:
            if len(row) != width:
                raise ValueError(f"{name}: table {num} row {row!r} does not match columns {table['columns']!r}")
    return data


def load_spec_tables(version: str = "NNW-TEC-V1.0") -> dict:
    """The whole data file for ``version`` (cached; do not mutate the returned dict)."""
    return _load(version)


def _table(table: str | int, version: str) -> dict:
    tables = _load(version)["tables"]
    key = str(table)
    if key not in tables:
        raise SpecTableError(
            f"unknown table {table!r} for {version}; known: {sorted(tables, key=int)}")
    return tables[key]


def table_columns(table: str | int, version: str = "NNW-TEC-V1.0") -> list[str]:
    """Column names of ``table``."""
    return list(_table(table, version)["columns"])


def _equal(value: Any, wanted: Any) -> bool:
    if isinstance(value, (int, float)) and isinstance(wanted, (int, float)) \
            and not isinstance(value, bool) and not isinstance(wanted, bool):
        return math.isclose(value, wanted, rel_tol=1e-9, abs_tol=1e-12)
    return value == wanted


def published_rows(table: str | int, version: str = "NNW-TEC-V1.0", **filters: Any) -> list[dict]:
    """Rows of ``table`` as dicts keyed by column name, kept where every ``column=value`` filter is equal.

    Numbers compare with a float tolerance, so ``published_rows("4", S=0.1, alpha=5)`` matches
    ``0.1`` however it was computed. A filter on a column the table does not have raises SpecTableError
    (a ValueError and a KeyError).
    """
    t = _table(table, version)
    columns = t["columns"]
    unknown = [k for k in filters if k not in columns]
    if unknown:
        raise SpecTableError(f"table {table} has no column(s) {unknown}; columns: {columns}")
    out = []
    for row in t["rows"]:
        rec = dict(zip(columns, row))
        if all(_equal(rec[k], v) for k, v in filters.items()):
            out.append(copy.copy(rec))
    return out
