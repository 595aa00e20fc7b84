"""The data of the figures and of the report's tables, read from clause records (no matplotlib).

A clause record is the ``ClauseResult`` a check returns, or its dict form as stored in the
certificate (with the plugin's ``method``/``task``/``config``/``modification``/``property`` keys and
the Modification's ``modification_family``/``modification_params``).
:mod:`nnw.report` and :mod:`nnw.summary` use these helpers; :mod:`nnw.plots` draws with them.

* :func:`as_clause` — a record as a dict with its case's fields;
* :func:`modification_of` — family, Parameter and value of a record's Modification, read from
  its fields (``modification_family``, ``modification_params``; never parsed from a name);
* :func:`identification_rows` — a fingerprint record's rows of one model each (no cross reads);
* :func:`infer_property` — the record's property (its field, else guessed from its rows' keys);
* :func:`detection_figure` — how a method's detection figure is read (spec data);
* :func:`published_curve` — the published rows of a robustness table for a record
  (:mod:`nnw.spec.published`);
* :func:`robustness_series`, :func:`group_robustness` — the points of one robustness curve.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from nnw.spec.published import clause_filters, clause_rows

SPEC_VERSION = "NNW-TEC-V1.0"
CONTEXT_KEYS = ("method", "task", "config", "modification", "property")


def as_clause(result: Any, **context: Any) -> dict[str, Any]:
    """A clause record as a dict: a ``ClauseResult`` (``as_dict``) or a mapping, with ``context``
    (method, task, config, modification, property) filled in where given (not None). A
    ``modification`` context is the Modification object: its fields are the record's
    (:func:`nnw.checks.result.modification_fields`). Nothing is read from the title."""
    if hasattr(result, "as_dict"):
        data = dict(result.as_dict())
    elif isinstance(result, Mapping):
        data = dict(result)
    else:
        raise TypeError(f"expected a ClauseResult or a clause dict, got {type(result).__name__}")
    for k, v in context.items():
        if v is None:
            continue
        if k == "modification":
            if isinstance(v, str):
                raise TypeError("as_clause: give the Modification object as context, not its name "
                                f"({v!r}): a record's fields are never parsed back from a name")
            from nnw.checks.result import modification_fields

            data.update(modification_fields(v))
        else:
            data[k] = v
    data.setdefault("rows", [])
    return data


def modification_of(clause: Mapping[str, Any]) -> tuple[str | None, str | None, Any]:
    """A record's Modification as (family, its first Parameter — the strength, the spec tables'
    first column — and the value), from the record's fields ``modification_family`` and
    ``modification_params``; (None, None, None) for a record without them."""
    family, params = clause.get("modification_family"), clause.get("modification_params") or {}
    for key, value in params.items():
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return family, key, value
    return family, None, None


def identification_rows(clause: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A fingerprint clause's rows of one model each: the unicity clause's ``kind == "identify"``
    rows (its ``cross`` reads are kept beside them, one per pair of models); a robustness clause's
    rows (no ``kind``) all."""
    return [r for r in clause.get("rows") or [] if r.get("kind", "identify") == "identify"]


def infer_property(clause: Mapping[str, Any]) -> str | None:
    """The clause's property: its ``property`` key, else guessed from its rows' keys."""
    if clause.get("property"):
        return str(clause["property"])
    rows = clause.get("rows") or []
    keys = set().union(*(r.keys() for r in rows)) if rows else set()
    if "first_mark_score" in keys:
        return "overwriting"
    if "other_score" in keys:
        return "fingerprint_unicity"
    if "matched" in keys:
        return "fingerprint_robustness"
    if "intact" in keys:
        return "integrity"
    if any(k.startswith("impact_") for k in keys):
        return "imperceptibility"
    if "error_percent" in keys and "key_seed" in keys:
        return "robustness"
    if "model" in keys and "score" in keys:
        return "false_alarms"
    return None


@dataclass(frozen=True)
class DetectionFigure:
    """How a method's detection figure is read from a row, and which published column matches it."""

    label: str                                      # axis / column label
    value: Callable[[Mapping[str, Any]], float | None]
    threshold: Callable[[Mapping[str, Any]], float | None]
    published_column: str | None                    # column of NNW-TEC Tables 4-21
    threshold_label: str = "decision threshold"
    higher_is_better: bool = True


def _f(x: Any) -> float | None:
    try:
        return None if x is None else float(x)
    except (TypeError, ValueError):
        return None


def _ber(row: Mapping[str, Any]) -> float | None:
    if row.get("ber") is not None:
        return _f(row["ber"])
    s = _f(row.get("score"))
    return None if s is None else 1.0 - s  # RTW's detector: score = 1 - BER


def _pct(key: str) -> Callable[[Mapping[str, Any]], float | None]:
    return lambda row: None if _f(row.get(key)) is None else 100.0 * float(row[key])


_READERS: dict[str, Callable[[Mapping[str, Any]], float | None]] = {
    "score": lambda r: _f(r.get("score")), "ber": _ber, "percent": _pct("score")}
_THRESHOLDS: dict[str, Callable[[Mapping[str, Any]], float | None]] = {
    "row": lambda r: _f(r.get("threshold")), "percent": _pct("threshold")}
_DEFAULT_FIGURE = DetectionFigure("detection score", _READERS["score"], _THRESHOLDS["row"], None,
                                  "the method's threshold")


def detection_figure(method: str | None) -> DetectionFigure:
    """The detection figure of NNW-TEC's tables for ``method`` (spec data, e.g. Spearman rho, BER,
    trigger-set share %: :func:`nnw.spec.technologies.detection_figure`); the method's own
    ``score``/``threshold`` for a method the spec does not define."""
    from nnw.spec.technologies import detection_figure as spec_figure

    spec = spec_figure(method)
    if not spec:
        return _DEFAULT_FIGURE
    th = spec["threshold"]
    threshold = _THRESHOLDS[th] if isinstance(th, str) else (lambda r, v=float(th): v)
    return DetectionFigure(spec["label"], _READERS[spec["read"]], threshold, spec.get("column"),
                           spec.get("threshold_label", "decision threshold"), bool(spec.get("higher_is_better", True)))


@dataclass
class PublishedCurve:
    table: str
    label: str
    x: list[float] = field(default_factory=list)
    detection: list[float | None] = field(default_factory=list)
    error: list[float | None] = field(default_factory=list)


def published_curve(table: str | None, method: str | None, task: str | None, config: Mapping[str, Any] | None,
                    param: str | None, *, version: str = SPEC_VERSION) -> PublishedCurve | None:
    """The published rows of robustness table ``table`` for this method/task/configuration, sorted
    by the Modification parameter; ``None`` when the spec has no such rows."""
    if not table or not param or not str(table).isdigit():
        return None
    try:
        from nnw.spec import load_spec_tables, table_columns

        columns = table_columns(table, version)
        meta = load_spec_tables(version)["tables"][str(table)]
    except (ImportError, KeyError, ValueError):
        return None
    fig = detection_figure(method)
    if param not in columns or "error" not in columns or fig.published_column not in columns:
        return None
    filters = clause_filters(table, task=task, config=config, version=version) or {}
    rows = clause_rows(table, task=task, config=config, version=version)
    rows = [r for r in rows if isinstance(r.get(param), (int, float))]
    if not rows:
        return None
    rows.sort(key=lambda r: r[param])
    fixed = dict(meta.get("config") or {})
    fixed.update({k: v for k, v in filters.items() if k != "model"})
    where = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in fixed.items())
    label = f"NNW-TEC Table {table} (published{', ' + where if where else ''})"
    return PublishedCurve(str(table), label, [float(r[param]) for r in rows],
                          [_f(r.get(fig.published_column)) for r in rows], [_f(r.get("error")) for r in rows])


@dataclass
class RobustnessSeries:
    """The data of one robustness figure (one method/task/configuration/Modification family)."""

    method: str | None
    task: str | None
    config: dict[str, Any]
    family: str | None
    param: str | None
    figure: DetectionFigure
    # key -> sorted [(x, detection value, error %, detected, useful)]
    keys: dict[Any, list[tuple[float, float | None, float | None, bool | None, bool | None]]]
    thresholds: list[float]
    tolerance_percent: float | None
    published: PublishedCurve | None
    tables: list[str]


def robustness_series(clauses: Iterable[Any], *, version: str = SPEC_VERSION) -> RobustnessSeries:
    """Collect the points of :func:`robustness_plot` from robustness clauses (one curve)."""
    items = [as_clause(c) for c in clauses]
    if not items:
        raise ValueError("robustness_series: no clause given")
    first = items[0]
    method, task, config = first.get("method"), first.get("task"), dict(first.get("config") or {})
    fig = detection_figure(method)
    keys: dict[Any, list] = defaultdict(list)
    thresholds, tables, family, param, tol = [], [], None, None, None
    for c in items:
        fam, p, x = modification_of(c)
        family, param = family or fam, param or p
        if not isinstance(x, (int, float)):
            x = 0.0
        if c.get("table") and str(c["table"]) not in tables:
            tables.append(str(c["table"]))
        tol = tol if tol is not None else _f((c.get("threshold") or {}).get("useful_error_tolerance_percent"))
        for i, row in enumerate(c.get("rows") or []):
            key = (row.get("model_seed", 0), row["key_seed"]) if "key_seed" in row else row.get("model", i)
            keys[key].append((float(x), fig.value(row), _f(row.get("error_percent")),
                              row.get("detected"), row.get("useful")))
            t = fig.threshold(row)
            if t is not None:
                thresholds.append(t)
    for pts in keys.values():
        pts.sort(key=lambda p: p[0])
    published = published_curve(tables[0] if tables else None, method, task, config, param, version=version)
    return RobustnessSeries(method, task, config, family, param, fig, dict(keys), thresholds, tol, published, tables)


def group_robustness(clauses: Iterable[Mapping[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    """Robustness clauses grouped into curves: (method, task, configuration, family) -> clauses,
    each group sorted by the Modification parameter."""
    groups: dict[tuple, list] = defaultdict(list)
    for c in clauses:
        c = as_clause(c)
        if infer_property(c) != "robustness":
            continue
        family, _, _ = modification_of(c)
        cfg = tuple(sorted((str(k), repr(v)) for k, v in (c.get("config") or {}).items()))
        groups[(c.get("method"), c.get("task"), cfg, family)].append(c)
    for items in groups.values():
        items.sort(key=lambda c: _sort_value(modification_of(c)[2]))
    return dict(groups)


def _sort_value(x: Any) -> tuple:
    return (0, float(x), "") if isinstance(x, (int, float)) else (1, 0.0, str(x))

