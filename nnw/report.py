"""Render a conformance certificate as a Markdown summary in the layout of NNW-TEC's tables.

    python -m nnw.report nnw-certificate.json [-o report.md] [--plots DIR]

The certificate is validated against its published schema first (exit status 2, with the reason,
when the file is missing, not JSON or not a valid certificate). The summary has a header (spec
version, method(s), profile, environment, overall verdict and counts), the failing clauses first
(message, measured value, threshold), then per method one section per property: the
imperceptibility rows (configuration, Impact, detection), one robustness table per Modification
family like NNW-TEC Tables 4–21 (parameter | detection figure per key | error per key | published
row | spread over keys | SER per key for decoding methods | verdict), the false alarms with rates
and confidence intervals, Watermark Overwriting (Figure 4), the Actors recovered after each later
mark (§7.2.6), fingerprinting and integrity verification (judged intact/modified per Modification). ``--plots DIR`` also writes the figures of :mod:`nnw.plots`
(one PNG per robustness curve and per overwriting clause) and links them from the Markdown.

:func:`render_markdown` is the same rendering as a function (no I/O, no matplotlib).
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from nnw.plotdata import (detection_figure, group_robustness, infer_property, parse_modification_name,
                          published_curve)
from nnw.spec.published import clause_rows

PROPERTY_ORDER = ("imperceptibility", "robustness", "false_alarms", "overwriting", "fingerprint_unicity",
                  "fingerprint_robustness", "integrity")
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
VERDICT_ORDER = ("fail", "known failure", "pass", "not applicable")


class CertificateError(Exception):
    """The file is missing, not JSON, or not a valid certificate."""


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
    return _esc(str(x))


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _verdict(v: str) -> str:
    return {"fail": "**FAIL**", "pass": "pass", "known failure": "*known failure*",
            "not applicable": "n/a"}.get(v, _esc(v))


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        out.append("| " + " | ".join(c if isinstance(c, str) else fmt(c) for c in r) + " |")
    return out + [""]


def _cfg(config: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={fmt(v)}" for k, v in (config or {}).items()) or "–"


def _node(c: Mapping[str, Any]) -> str:
    node = str(c.get("nodeid", ""))
    return node.split("[", 1)[1].rstrip("]") if "[" in node else node


def _ci(pair: Any) -> str:
    if isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(v, (int, float)) for v in pair):
        return f"[{pair[0]:.3f}, {pair[1]:.3f}]"
    return fmt(pair)


# -- sections --------------------------------------------------------------------------------------
def _header(cert: Mapping[str, Any]) -> list[str]:
    summary = cert["summary"]
    counts = summary.get("counts", {})
    total = sum(counts.values())
    ordered = sorted(counts.items(), key=lambda kv: (VERDICT_ORDER.index(kv[0]) if kv[0] in VERDICT_ORDER else 9, kv[0]))
    count_text = ", ".join(f"{n} {v}" for v, n in ordered) or "no clauses"
    methods = []
    for m in cert.get("methods", []):
        tags = m.get("tags", {})
        caps = [str(tags[k]) for k in ("kind", "insertion") if tags.get(k)]
        caps += [k.replace("_", "-") for k in ("detects", "decodes", "fingerprints", "multi_mark") if tags.get(k) is True]
        origin = f" (`{m['origin']}`)" if m.get("origin") else ""
        methods.append(f"{_esc(m['name'])} {_esc(m['version'])}{origin}, sha256 `{m['sha256'][:12]}`"
                       + (f"; {', '.join(caps)}" if caps else ""))
    prof = cert["profile"]
    env = cert["environment"]
    seeds = cert["seeds"]
    suite = cert["suite"]
    lines = [f"# nnw conformance report — {summary['verdict'].upper()}", ""]
    lines += _table(["", ""], [
        ["spec", f"{_esc(cert['spec_version'])} (certificate schema {_esc(cert['schema_version'])})"],
        ["suite", f"{_esc(suite['name'])} {_esc(suite['version'])}"],
        ["method(s)", "<br>".join(methods) or "–"],
        ["profile", f"{_esc(prof['name'])} (`{_esc(prof['source'])}`"
                    + (f", sha256 `{prof['sha256'][:12]}`" if prof.get("sha256") else "") + ")"],
        ["environment", ", ".join(f"{k} {_esc(str(v))}" for k, v in env.items())],
        ["seeds", f"models {fmt(seeds.get('model_seeds'))}; keys {fmt(seeds.get('key_seeds'))}"],
        ["verdict", f"**{summary['verdict'].upper()}** — {count_text} ({total} clause{'s' if total != 1 else ''})"],
    ])
    return lines


def _failing(clauses: list[dict[str, Any]]) -> list[str]:
    bad = [c for c in clauses if c["verdict"] in ("fail", "known failure")]
    if not bad:
        return ["## Failing clauses", "", "None: every clause passed or does not apply.", ""]
    lines = ["## Failing clauses", ""]
    for c in sorted(bad, key=lambda c: (c["verdict"] != "fail", c["nodeid"])):
        lines.append(f"- {_verdict(c['verdict'])} `{c['nodeid']}` — {_esc(c['clause'])}: {_esc(c['title'])}")
        lines.append(f"  - message: {_esc(c['message'])}")
        lines.append(f"  - measured: {_measured(c.get('measured'))}")
        lines.append(f"  - threshold: {_measured(c.get('threshold'))}")
    return lines + [""]


def _measured(m: Any) -> str:
    if not isinstance(m, Mapping) or not m:
        return "–"
    return "; ".join(f"{_esc(str(k))} = {fmt(v)}" for k, v in m.items())


def _imperceptibility(items: list[dict[str, Any]]) -> list[str]:
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
        rows.append([fmt(c.get("task")), _cfg(c.get("config")),
                     ", ".join(f"{k} {fmt(v)}" for k, v in impact.items()) or "–", per_key,
                     fmt(spread) if spread else "–", fmt(bound), f"{det}/{len(keys)}", pub,
                     _verdict(c["verdict"])])
    tables = sorted({str(c["table"]) for c in items if c.get("table")}, key=_table_key)
    head = f"### Imperceptibility ({_clauses_text(items)}{'; NNW-TEC Table ' + ', '.join(tables) if tables else ''})"
    return [head, ""] + _table(["model", "configuration", "Impact % (max over keys)", "Impact % per key",
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
    return ", ".join(sorted({_esc(c["clause"]) for c in items}))


def _robustness(items: list[dict[str, Any]], plots: Mapping[tuple, str]) -> list[str]:
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
        param = parse_modification_name(fam_clauses[0].get("modification"))[1] or "Parameter"
        fig_labels = sorted({detection_figure(c.get("method")).label for c in fam_clauses})
        decodes = any("ser" in r or "ber" in r for c in fam_clauses for r in c.get("rows") or [])
        header = ["model", "method", "configuration", param, " / ".join(fig_labels) + " per key", "spread over keys",
                  "threshold", "error % per key (mean)", "useful", "published (detection, error %)", "verdict"]
        if decodes:
            header.insert(6, "SER per key (BER)")
        else:
            rows = [r[:6] + r[7:] for r in rows]
        lines += _table(header, rows)
        for gk in gkeys:
            if gk in plots:
                method, task, _, fam = gk
                lines += [f"![{_esc(str(method))} {_esc(str(task))} {fam}]({plots[gk]})", ""]
    return lines


def _robustness_row(c: Mapping[str, Any]) -> list[str]:
    fig = detection_figure(c.get("method"))
    rows = c.get("rows") or []
    family, param, value = parse_modification_name(c.get("modification"))
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
    return [fmt(c.get("task")), fmt(c.get("method")), _cfg(c.get("config")), fmt(value), det_text, spread, ser,
            fmt(th[0]) if th else "–", err_text or "–", useful, pub_text, _verdict(c["verdict"])]


def _false_alarms(items: list[dict[str, Any]]) -> list[str]:
    rows = []
    for c in sorted(items, key=lambda c: (str(c.get("task")), _cfg(c.get("config")), str(c.get("modification")))):
        m = c.get("measured") or {}
        th = c.get("threshold") or {}
        conf = th.get("confidence")
        rows.append([fmt(c.get("task")), _cfg(c.get("config")), fmt(c.get("modification") or "unmodified"),
                     f"{fmt(m.get('false_alarms'))}/{fmt(m.get('negatives'))}", fmt(m.get("false_alarm_rate")),
                     _ci(m.get("false_alarm_ci")) + (f" ({fmt(100 * conf)}%)" if isinstance(conf, (int, float)) else ""),
                     fmt(th.get("nominal_false_alarm_rate")), fmt(m.get("max_score")), _verdict(c["verdict"])])
    return [f"### False alarms ({_clauses_text(items)})", ""] + _table(
        ["model", "configuration", "Modification", "false alarms", "rate", "CI", "nominal", "max score", "verdict"], rows)


def _overwriting(items: list[dict[str, Any]], plots: Mapping[str, str]) -> list[str]:
    lines = [f"### Watermark Overwriting ({_clauses_text(items)})", ""]
    rows = []
    for c in items:
        if not c.get("rows"):
            rows.append([fmt(c.get("task")), fmt(c.get("method")), "–", "–", "–", "–", "–", _verdict(c["verdict"])])
        for r in c.get("rows") or []:
            actors = [k for k in r if k.endswith("_detected") and k != "first_mark_detected"]
            found = sum(bool(r[k]) for k in actors)
            rows.append([fmt(c.get("task")), fmt(c.get("method")), f"{fmt(100 * float(r.get('overlap', 0)))}%",
                         fmt(r.get("first_mark_score")), fmt(r.get("threshold")), fmt(r.get("first_mark_detected")),
                         f"{found}/{len(actors)}" if actors else "–", _verdict(c["verdict"])])
    lines += _table(["model", "method", "shared with later marks", "1st-mark score", "threshold", "1st detected",
                     "Actors detected", "verdict"], rows)
    for c in items:
        if c["nodeid"] in plots:
            lines += [f"![{_esc(c['title'])}]({plots[c['nodeid']]})", ""]
    return lines


def _actors(items: list[dict[str, Any]]) -> list[str]:
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
                rows.append([fmt(c.get("task")), fmt(c.get("modification") or "Figure 4"), _cfg(c.get("config")), who,
                             _esc(str(stage.get("after"))),
                             f"{len(stage.get('recovered') or [])}/{stage.get('marks')}",
                             _esc(", ".join(stage.get("recovered") or []) or "none") + decoded,
                             _esc(", ".join(stage.get("lost") or []) or "–")])
    if not rows:
        return []
    return ["### Actors recovered after each later mark (NNW-TEC §7.2.6)", ""] + _table(
        ["model", "Modification", "configuration", "key / overlap", "after the mark of", "recovered", "Actors recovered",
         "Actors lost"], rows)


def _integrity(items: list[dict[str, Any]]) -> list[str]:
    rows = []
    for c in sorted(items, key=lambda c: (str(c.get("task")), _cfg(c.get("config")), str(c.get("modification")))):
        m = c.get("measured") or {}
        rs = c.get("rows") or []
        judged = " / ".join(("intact" if r.get("intact") else f"modified ({fmt(r.get('changed_values'))} of "
                             f"{fmt(r.get('values'))} changed)") for r in rs) or "–"
        if c.get("modification"):
            rate = f"missed detection {fmt(m.get('missed_detection_rate'))} {_ci(m.get('missed_detection_ci'))}"
        else:
            rate = f"false alarm {fmt(m.get('false_alarm_rate'))} {_ci(m.get('false_alarm_ci'))}"
        rows.append([fmt(c.get("task")), _cfg(c.get("config")), fmt(c.get("modification") or "unmodified"),
                     fmt((c.get("threshold") or {}).get("judged")), judged, rate, _verdict(c["verdict"])])
    return [f"### Integrity verification ({_clauses_text(items)})", ""] + _table(
        ["model", "configuration", "Modification", "expected", "judged, per model", "rate (CI)", "verdict"], rows)


def _fingerprint_unicity(items: list[dict[str, Any]]) -> list[str]:
    rows = [[fmt(c.get("task")), fmt(c.get("method")), str(len(c.get("rows") or [])),
             fmt((c.get("measured") or {}).get("max_cross_score")), fmt(c.get("threshold")),
             _esc(c["message"]), _verdict(c["verdict"])] for c in items]
    return [f"### Fingerprint unicity ({_clauses_text(items)})", ""] + _table(
        ["model", "method", "models", "max cross score", "threshold", "result", "verdict"], rows)


def _fingerprint_robustness(items: list[dict[str, Any]]) -> list[str]:
    rows = []
    for c in items:
        rs = c.get("rows") or []
        own = sum(r.get("matched") == r.get("model") for r in rs)
        rows.append([fmt(c.get("task")), fmt(c.get("method")), fmt(c.get("modification")), f"{own}/{len(rs)}",
                     f"{sum(bool(r.get('useful')) for r in rs)}/{len(rs)}",
                     " / ".join(fmt(r.get("error_percent")) for r in rs) or "–",
                     " / ".join(fmt(r.get("score")) for r in rs) or "–", _verdict(c["verdict"])])
    return [f"### Fingerprint robustness ({_clauses_text(items)})", ""] + _table(
        ["model", "method", "Modification", "matched to own entry", "useful", "error % per model", "score per model",
         "verdict"], rows)


def _generic(prop: str, items: list[dict[str, Any]]) -> list[str]:
    rows = [[_esc(_node(c)), _esc(c["title"]), _measured(c.get("measured")), _measured(c.get("threshold")),
             _verdict(c["verdict"])] for c in items]
    title = PROPERTY_TITLES.get(prop, prop.replace("_", " ").capitalize())
    return [f"### {title} ({_clauses_text(items)})", ""] + _table(["case", "title", "measured", "threshold", "verdict"], rows)


def render_markdown(cert: Mapping[str, Any], *, plots: Mapping[Any, str] | None = None) -> str:
    """The Markdown summary of ``cert`` (a certificate dict, assumed valid; see :func:`load_certificate`).

    ``plots`` (optional) maps a robustness curve key (as in :func:`nnw.plotdata.group_robustness`)
    or an overwriting clause's node id to an image path, linked under its table.
    """
    plots = dict(plots or {})
    clauses = sorted(cert.get("clauses", []), key=lambda c: c["nodeid"])
    lines = _header(cert) + _failing(clauses)
    by_method: dict[str, list] = defaultdict(list)
    for c in clauses:
        by_method[str(c.get("method", "?"))].append(c)
    order = [m["name"] for m in cert.get("methods", []) if m["name"] in by_method]
    order += sorted(m for m in by_method if m not in order)
    for method in order:
        items = by_method[method]
        counts = Counter(c["verdict"] for c in items)
        lines += [f"## {_esc(method)}", "",
                  "verdicts: " + ", ".join(f"{n} {v}" for v, n in sorted(counts.items())), ""]
        by_prop: dict[str, list] = defaultdict(list)
        for c in items:
            by_prop[infer_property(c) or "other"].append(c)
        actor_items = [c for c in items if any("actors" in r for r in c.get("rows") or [])]
        for prop in list(PROPERTY_ORDER) + sorted(p for p in by_prop if p not in PROPERTY_ORDER):
            if prop == "integrity":  # after robustness and Figure 4, before integrity
                lines += _actors(actor_items)
            group = by_prop.get(prop)
            if not group:
                continue
            if prop == "imperceptibility":
                lines += _imperceptibility(group)
            elif prop == "robustness":
                lines += _robustness(group, plots)
            elif prop == "false_alarms":
                lines += _false_alarms(group)
            elif prop == "overwriting":
                lines += _overwriting(group, plots)
            elif prop == "fingerprint_unicity":
                lines += _fingerprint_unicity(group)
            elif prop == "fingerprint_robustness":
                lines += _fingerprint_robustness(group)
            elif prop == "integrity":
                lines += _integrity(group)
            else:
                lines += _generic(prop, group)
    from nnw.stress import markdown as stress_markdown  # the separate "stress" section, beside the clauses

    lines += stress_markdown(cert.get("stress"), plots)
    return "\n".join(lines).rstrip() + "\n"


# -- files and command line ------------------------------------------------------------------------
def load_certificate(path: str | Path) -> dict[str, Any]:
    """Read and validate a certificate; raise :class:`CertificateError` with the reason."""
    p = Path(path)
    if not p.is_file():
        raise CertificateError(f"{path}: no such file")
    try:
        cert = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CertificateError(f"{path}: not JSON ({exc})") from None
    import jsonschema

    from nnw.certificate import validate

    try:
        validate(cert)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(x) for x in exc.absolute_path) or "(top level)"
        raise CertificateError(f"{path}: not a valid nnw certificate: {exc.message} at {where}") from None
    return cert


def write_plots(cert: Mapping[str, Any], directory: str | Path, relative_to: str | Path = ".") -> dict[Any, str]:
    """Write one PNG per robustness curve and per overwriting clause into ``directory``; return the
    ``plots`` mapping of :func:`render_markdown` (paths relative to ``relative_to``, the directory
    of the Markdown file)."""
    import os

    from nnw.plots import overwriting_plot, robustness_plot

    d = Path(directory)
    base = Path(os.path.relpath(d.resolve(), Path(relative_to).resolve())).as_posix()
    d.mkdir(parents=True, exist_ok=True)
    out: dict[Any, str] = {}
    clauses = cert.get("clauses", [])
    for gk, items in group_robustness(clauses).items():
        method, task, cfg, family = gk
        name = _slug(f"robustness-{method}-{task}-{'-'.join(k + v for k, v in cfg)}-{family}") + ".png"
        (d / name).write_bytes(robustness_plot(items))
        out[gk] = f"{base}/{name}"
    for c in clauses:
        if infer_property(c) == "overwriting" and c.get("rows"):
            name = _slug(f"overwriting-{_node(c)}") + ".png"
            (d / name).write_bytes(overwriting_plot(c))
            out[c["nodeid"]] = f"{base}/{name}"
    from nnw.stress import write_plots as stress_plots

    out.update(stress_plots(cert.get("stress"), d, base))
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nnw.report",
                                 description="Render an nnw conformance certificate as a Markdown summary.")
    ap.add_argument("certificate", help="certificate JSON (nnw-certificate.json)")
    ap.add_argument("-o", "--output", help="write the Markdown here (default: standard output)")
    ap.add_argument("--plots", metavar="DIR",
                    help="also write the robustness and overwriting figures (PNG) into DIR and link them "
                         "(relative to the -o file's directory)")
    args = ap.parse_args(argv)
    try:
        cert = load_certificate(args.certificate)
    except CertificateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    where = Path(args.output).parent if args.output else Path.cwd()
    plots = write_plots(cert, args.plots, relative_to=where) if args.plots else None
    text = render_markdown(cert, plots=plots)
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
