"""Terminal summary of a conformance run in the layout of NNW-TEC's tables, measured beside published."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from nnw.plotdata import modification_of
from nnw.report_tables import node_label
from nnw.spec.published import clause_rows


def _published(table: str | None, clause: dict[str, Any]) -> str:
    if not table or not clause.get("modification"):
        return ""
    _, param, value = modification_of(clause)
    if param is None or not isinstance(value, (int, float)):
        return ""
    rows = clause_rows(table, task=clause.get("task"), config=clause.get("config"), **{param: float(value)})
    if not rows:
        return ""
    r = rows[0]
    fig = r.get("corr", r.get("ber", r.get("share_percent")))
    return f"  [Table {table} published: detection {fig}, error {r.get('error')}%]"


def summary_lines(clauses: list[dict[str, Any]]) -> list[str]:
    by_prop: dict[str, list] = defaultdict(list)
    for c in sorted(clauses, key=lambda c: c["nodeid"]):
        by_prop[c.get("property", "?")].append(c)
    lines = []
    counts = defaultdict(int)
    for prop, items in by_prop.items():
        lines.append(f"{prop.replace('_', ' ').title()}:")
        for c in items:
            counts[c["verdict"]] += 1
            node = node_label(c)
            lines.append(f"  {c['verdict'].upper():14s} {node}: {c['message'][:160]}{_published(c.get('table'), c)}")
    lines.append("verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return lines
