"""The Markdown tables of the report (:mod:`nnw.report`), one section per property, in the layout
of NNW-TEC's tables: imperceptibility rows, one robustness table per Modification family (Tables
4-21), false alarms, Watermark Overwriting (Figure 4), the Actors recovered after each later mark
(§7.2.6), integrity verification and fingerprinting; and the cell formatting they share."""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

from nnw.plotdata import detection_figure, group_robustness, identification_rows, modification_of, published_curve
from nnw.spec.published import clause_rows

PROPERTY_TITLES = {
    "imperceptibility": "Imperceptibility",
    "robustness": "Robustness",
    "false_alarms": "False alarms",
    "overwriting": "Watermark Overwriting (Figure 4)",
    "fingerprint_unicity": "Fingerprint unicity",
    "fingerprint_robustness": "Fingerprint robustness",
    "integrity": "Integrity verification",
}
FAMILY_TITLES = {"noise": "Gaussian noise addition", "pruning": "magnitude pruning", "random_pruning": "random pruning",
                 "quantization": "quantization", "finetuning": "fine-tuning", "distillation": "knowledge distillation",
                 "overwriting": "Watermark Overwriting"}

# -- formatting ------------------------------------------------------------------------------------
def fmt(x: Any, digits: int = 3) -> str:
    """A table cell: numbers with ``digits`` significant digits, lists joined by '/', text escaped."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        return f"{x:.{digits}g}"
    if isinstance(x, (list, tuple)):
        return " / ".join(fmt(v, digits) for v in x)
    if isinstance(x, Mapping):
        return ", ".join(f"{k} {fmt(v, digits)}" for k, v in x.items())
    return esc(str(x))


def esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def verdict_cell(v: str) -> str:
    return {"fail": "**FAIL**", "pass": "pass", "known failure": "*known failure*",
            "not applicable": "n/a"}.get(v, esc(v))


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(c if isinstance(c, str) else fmt(c) for c in r) + " |")
    return out + [""]


def config_text(config: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={fmt(v)}" for k, v in (config or {}).items()) or "–"


def node_label(c: Mapping[str, Any]) -> str:
    node = str(c.get("nodeid", ""))
    return node.split("[", 1)[1].rstrip("]") if "[" in node else node


def ci_text(pair: Any) -> str:
    if isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(v, (int, float)) for v in pair):
        return f"[{pair[0]:.3f}, {pair[1]:.3f}]"
    return fmt(pair)



def measured_text(m: Any) -> str:
    if not isinstance(m, Mapping) or not m:
        return "–"
    return "; ".join(f"{esc(str(k))} = {fmt(v)}" for k, v in m.items())


def imperceptibility_section(items: list[dict[str, Any]]) -> list[str]:
    rows = []
    for c in items:
        m = c.get("measured") or {}
        impact = m.get("impact_percent") or {}
        keys = c.get("rows") or []
        measures = list(impact) or sorted({k[len("impact_"):] for r in keys for k in r if k.startswith("impact_")})
        per_key = "<br>".join(
            f"{m_}: " + " / ".join(fmt(r.get(f"impact_{m_}")) for r in keys) for m_ in measures) or "–"
        spread = m.get("unmarked_spread") or {}
        det = sum(bool(r.get("detected")) for r in keys)
        pub = _published_impact(c)
        bound = (c.get("threshold") or {}).get("impact_bound_percent")
        rows.append([fmt(c.get("task")), config_text(c.get("config")),
                     ", ".join(f"{k} {fmt(v)}" for k, v in impact.items()) or "–", per_key,
                     fmt(spread) if spread else "–", fmt(bound), f"{det}/{len(keys)}", pub,
                     verdict_cell(c["verdict"])])
    tables = sorted({str(c["table"]) for c in items if c.get("table")}, key=_table_key)
    head = f"### Imperceptibility ({_clauses_text(items)}{'; NNW-TEC Table ' + ', '.join(tables) if tables else ''})"
    return [head, ""] + md_table(["model", "configuration", "Impact % (max over keys)", "Impact % per key",
                                "unmarked spread", "bound %", "detected", "published", "verdict"], rows)


def _published_impact(c: Mapping[str, Any]) -> str:
    table = c.get("table")
    rows = clause_rows(table, task=c.get("task"), config=c.get("config"))
    if not rows:
        return "–"
    r = rows[0]
    parts = [f"{k} {fmt(r[k])}" for k in ("impact_error", "impact_top1", "impact", "ber", "share_percent") if k in r]
    return f"Table {table}: " + ", ".join(parts)


def _table_key(t: str) -> tuple:
    return (0, int(t), "") if t.isdigit() else (1, 0, t)


def _clauses_text(items: list[dict[str, Any]]) -> str:
    return ", ".join(sorted({esc(c["clause"]) for c in items}))


def robustness_section(items: list[dict[str, Any]], plots: Mapping[tuple, str]) -> list[str]:
    lines = []
    groups = group_robustness(items)
    by_family: dict[str | None, list[tuple]] = defaultdict(list)
    for gk in groups:
        by_family[gk[3]].append(gk)
    for family in sorted(by_family, key=lambda f: str(f)):
        gkeys = sorted(by_family[family], key=lambda g: tuple(str(x) for x in g))
        fam_clauses = [c for gk in gkeys for c in groups[gk]]
        tables = sorted({str(c["table"]) for c in fam_clauses if c.get("table")}, key=_table_key)
        ref = f"; NNW-TEC Table {', '.join(tables)}" if tables else ""
        lines += [f"### Robustness against {FAMILY_TITLES.get(family or '', family or 'Modification')} "
                  f"({_clauses_text(fam_clauses)}{ref})", ""]
        rows = []
        for gk in gkeys:
            for c in groups[gk]:
                rows.append(_robustness_row(c))
        param = modification_of(fam_clauses[0])[1] or "Parameter"
        fig_labels = sorted({detection_figure(c.get("method")).label for c in fam_clauses})
        decodes = any("ser" in r or "ber" in r for c in fam_clauses for r in c.get("rows") or [])
        header = ["model", "method", "configuration", param, " / ".join(fig_labels) + " per key", "spread over keys",
                  "threshold", "error % per key (mean)", "useful", "published (detection, error %)", "verdict"]
        if decodes:
            header.insert(6, "SER per key (BER)")
        else:
            rows = [r[:6] + r[7:] for r in rows]
        lines += md_table(header, rows)
        for gk in gkeys:
            if gk in plots:
                method, task, _, fam = gk
                lines += [f"![{esc(str(method))} {esc(str(task))} {fam}]({plots[gk]})", ""]
    return lines


def _robustness_row(c: Mapping[str, Any]) -> list[str]:
    fig = detection_figure(c.get("method"))
    rows = c.get("rows") or []
    family, param, value = modification_of(c)
    det = [fig.value(r) for r in rows]
    marks = ["" if r.get("detected", True) else "✗" for r in rows]
    det_text = " / ".join(fmt(v) + m for v, m in zip(det, marks)) or "–"
    errs = [r.get("error_percent") for r in rows]
    num = [e for e in errs if isinstance(e, (int, float))]
    err_text = " / ".join(fmt(e) for e in errs) + (f" ({fmt(sum(num) / len(num))})" if len(num) > 1 else "")
    th = [t for t in (fig.threshold(r) for r in rows) if t is not None]
    useful = f"{sum(bool(r.get('useful')) for r in rows)}/{len(rows)}" if rows else "–"
    pub = published_curve(c.get("table"), c.get("method"), c.get("task"), c.get("config"), param)
    pub_text = "–"
    if pub is not None and isinstance(value, (int, float)):
        hits = [(d, e) for x, d, e in zip(pub.x, pub.detection, pub.error) if math.isclose(x, float(value))]
        if hits:
            pub_text = f"Table {pub.table}: {fmt(hits[0][0])}, {fmt(hits[0][1])}"
    nums = [v for v in det if isinstance(v, (int, float))]
    spread = fmt(max(nums) - min(nums)) if len(nums) > 1 else "–"
    ser = " / ".join(f"{fmt(r.get('ser'))} ({fmt(r.get('ber'))})" for r in rows) if rows else "–"
    return [fmt(c.get("task")), fmt(c.get("method")), config_text(c.get("config")), fmt(value), det_text, spread, ser,
            fmt(th[0]) if th else "–", err_text or "–", useful, pub_text, verdict_cell(c["verdict"])]


def false_alarms_section(items: list[dict[str, Any]]) -> list[str]:
    rows = []
    for c in sorted(items, key=lambda c: (str(c.get("task")), config_text(c.get("config")), str(c.get("modification")))):
        m = c.get("measured") or {}
        th = c.get("threshold") or {}
        conf = th.get("confidence")
        rows.append([fmt(c.get("task")), config_text(c.get("config")), fmt(c.get("modification") or "unmodified"),
                     f"{fmt(m.get('false_alarms'))}/{fmt(m.get('negatives'))}", fmt(m.get("false_alarm_rate")),
                     ci_text(m.get("false_alarm_ci")) + (f" ({fmt(100 * conf)}%)" if isinstance(conf, (int, float)) else ""),
                     fmt(th.get("nominal_false_alarm_rate")), fmt(m.get("max_score")), verdict_cell(c["verdict"])])
    return [f"### False alarms ({_clauses_text(items)})", ""] + md_table(
        ["model", "configuration", "Modification", "false alarms", "rate", "CI", "nominal", "max score", "verdict"], rows)


def overwriting_section(items: list[dict[str, Any]], plots: Mapping[str, str]) -> list[str]:
    lines = [f"### Watermark Overwriting ({_clauses_text(items)})", ""]
    rows = []
    for c in items:
        if not c.get("rows"):
            rows.append([fmt(c.get("task")), fmt(c.get("method")), "–", "–", "–", "–", "–", verdict_cell(c["verdict"])])
        for r in c.get("rows") or []:
            actors = [k for k in r if k.endswith("_detected") and k != "first_mark_detected"]
            found = sum(bool(r[k]) for k in actors)
            rows.append([fmt(c.get("task")), fmt(c.get("method")), f"{fmt(100 * float(r.get('overlap', 0)))}%",
                         fmt(r.get("first_mark_score")), fmt(r.get("threshold")), fmt(r.get("first_mark_detected")),
                         f"{found}/{len(actors)}" if actors else "–", verdict_cell(c["verdict"])])
    lines += md_table(["model", "method", "shared with later marks", "1st-mark score", "threshold", "1st detected",
                     "Actors detected", "verdict"], rows)
    for c in items:
        if c["nodeid"] in plots:
            lines += [f"![{esc(c['title'])}]({plots[c['nodeid']]})", ""]
    return lines


def actors_section(items: list[dict[str, Any]]) -> list[str]:
    """§7.2.6 stage by stage: after each later mark, which Actors' marks are still recovered."""
    rows = []
    for c in sorted(items, key=lambda c: c["nodeid"]):
        for r in c.get("rows") or []:
            who = (f"key {r['key_seed']}" if "key_seed" in r else
                   f"{fmt(100 * float(r['overlap']))}% shared" if "overlap" in r else "–")
            for stage in r.get("actors") or []:
                ids = [cell.get("actor_id") for cell in stage.get("cells") or []]
                decoded = (" (decoded " + ", ".join("–" if i is None else str(i) for i in ids) + ")"
                           if any(i is not None for i in ids) else "")
                rows.append([fmt(c.get("task")), fmt(c.get("modification") or "Figure 4"), config_text(c.get("config")), who,
                             esc(str(stage.get("after"))),
                             f"{len(stage.get('recovered') or [])}/{stage.get('marks')}",
                             esc(", ".join(stage.get("recovered") or []) or "none") + decoded,
                             esc(", ".join(stage.get("lost") or []) or "–")])
    if not rows:
        return []
    return ["### Actors recovered after each later mark (NNW-TEC §7.2.6)", ""] + md_table(
        ["model", "Modification", "configuration", "key / overlap", "after the mark of", "recovered", "Actors recovered",
         "Actors lost"], rows)


def integrity_section(items: list[dict[str, Any]]) -> list[str]:
    rows = []
    for c in sorted(items, key=lambda c: (str(c.get("task")), config_text(c.get("config")), str(c.get("modification")))):
        m = c.get("measured") or {}
        rs = c.get("rows") or []
        judged = " / ".join(("intact" if r.get("intact") else f"modified ({fmt(r.get('changed_values'))} of "
                             f"{fmt(r.get('values'))} changed)") for r in rs) or "–"
        if c.get("modification"):
            rate = f"missed detection {fmt(m.get('missed_detection_rate'))} {ci_text(m.get('missed_detection_ci'))}"
        else:
            rate = f"false alarm {fmt(m.get('false_alarm_rate'))} {ci_text(m.get('false_alarm_ci'))}"
        rows.append([fmt(c.get("task")), config_text(c.get("config")), fmt(c.get("modification") or "unmodified"),
                     fmt((c.get("threshold") or {}).get("judged")), judged, rate, verdict_cell(c["verdict"])])
    return [f"### Integrity verification ({_clauses_text(items)})", ""] + md_table(
        ["model", "configuration", "Modification", "expected", "judged, per model", "rate (CI)", "verdict"], rows)


def fingerprint_unicity_section(items: list[dict[str, Any]]) -> list[str]:
    rows = [[fmt(c.get("task")), fmt(c.get("method")), str(len(identification_rows(c))),
             fmt((c.get("measured") or {}).get("max_cross_score")), fmt(c.get("threshold")),
             esc(c["message"]), verdict_cell(c["verdict"])] for c in items]
    return [f"### Fingerprint unicity ({_clauses_text(items)})", ""] + md_table(
        ["model", "method", "models", "max cross score", "threshold", "result", "verdict"], rows)


def fingerprint_robustness_section(items: list[dict[str, Any]]) -> list[str]:
    rows = []
    for c in items:
        rs = c.get("rows") or []
        own = sum(r.get("matched") == r.get("model") for r in rs)
        rows.append([fmt(c.get("task")), fmt(c.get("method")), fmt(c.get("modification")), f"{own}/{len(rs)}",
                     f"{sum(bool(r.get('useful')) for r in rs)}/{len(rs)}",
                     " / ".join(fmt(r.get("error_percent")) for r in rs) or "–",
                     " / ".join(fmt(r.get("score")) for r in rs) or "–", verdict_cell(c["verdict"])])
    return [f"### Fingerprint robustness ({_clauses_text(items)})", ""] + md_table(
        ["model", "method", "Modification", "matched to own entry", "useful", "error % per model", "score per model",
         "verdict"], rows)


def generic_section(prop: str, items: list[dict[str, Any]]) -> list[str]:
    rows = [[esc(node_label(c)), esc(c["title"]), measured_text(c.get("measured")), measured_text(c.get("threshold")),
             verdict_cell(c["verdict"])] for c in items]
    title = PROPERTY_TITLES.get(prop, prop.replace("_", " ").capitalize())
    return [f"### {title} ({_clauses_text(items)})", ""] + md_table(["case", "title", "measured", "threshold", "verdict"], rows)

