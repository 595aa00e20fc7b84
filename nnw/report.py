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

:func:`render_markdown` is the same rendering as a function (no I/O, no matplotlib); the tables of
each property are :mod:`nnw.report_tables`.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Mapping, Sequence

from nnw.plotdata import group_robustness, infer_property
from nnw.report_tables import (actors_section, esc, false_alarms_section, fingerprint_robustness_section,
                               fingerprint_unicity_section, fmt, generic_section, imperceptibility_section,
                               integrity_section, md_table, measured_text, node_label, overwriting_section,
                               robustness_section, verdict_cell)

PROPERTY_ORDER = ("imperceptibility", "robustness", "false_alarms", "overwriting", "fingerprint_unicity",
                  "fingerprint_robustness", "integrity")
VERDICT_ORDER = ("fail", "known failure", "pass", "not applicable")


class CertificateError(Exception):
    """The file is missing, not JSON, or not a valid certificate."""


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
        methods.append(f"{esc(m['name'])} {esc(m['version'])}{origin}, sha256 `{m['sha256'][:12]}`"
                       + (f"; {', '.join(caps)}" if caps else ""))
    prof = cert["profile"]
    env = cert["environment"]
    seeds = cert["seeds"]
    suite = cert["suite"]
    lines = [f"# nnw conformance report — {summary['verdict'].upper()}", ""]
    lines += md_table(["", ""], [
        ["spec", f"{esc(cert['spec_version'])} (certificate schema {esc(cert['schema_version'])})"],
        ["suite", f"{esc(suite['name'])} {esc(suite['version'])}"],
        ["method(s)", "<br>".join(methods) or "–"],
        ["profile", f"{esc(prof['name'])} (`{esc(prof['source'])}`"
                    + (f", sha256 `{prof['sha256'][:12]}`" if prof.get("sha256") else "") + ")"],
        ["environment", ", ".join(f"{k} {esc(str(v))}" for k, v in env.items())],
        ["seeds", f"models {fmt(seeds.get('model_seeds'))}; keys {fmt(seeds.get('key_seeds'))}"
                  + "".join(f"; {esc(t)}: models {fmt(v.get('model_seeds'))}, keys {fmt(v.get('key_seeds'))}"
                            for t, v in (seeds.get("tasks") or {}).items())],
        ["verdict", f"**{summary['verdict'].upper()}** — {count_text} ({total} clause{'s' if total != 1 else ''})"],
    ])
    return lines


def _failing(clauses: list[dict[str, Any]]) -> list[str]:
    bad = [c for c in clauses if c["verdict"] in ("fail", "known failure")]
    if not bad:
        return ["## Failing clauses", "", "None: every clause passed or does not apply.", ""]
    lines = ["## Failing clauses", ""]
    for c in sorted(bad, key=lambda c: (c["verdict"] != "fail", c["nodeid"])):
        lines.append(f"- {verdict_cell(c['verdict'])} `{c['nodeid']}` — {esc(c['clause'])}: {esc(c['title'])}")
        lines.append(f"  - message: {esc(c['message'])}")
        lines.append(f"  - measured: {measured_text(c.get('measured'))}")
        lines.append(f"  - threshold: {measured_text(c.get('threshold'))}")
    return lines + [""]



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
        lines += [f"## {esc(method)}", "",
                  "verdicts: " + ", ".join(f"{n} {v}" for v, n in sorted(counts.items())), ""]
        by_prop: dict[str, list] = defaultdict(list)
        for c in items:
            by_prop[infer_property(c) or "other"].append(c)
        actor_items = [c for c in items if any("actors" in r for r in c.get("rows") or [])]
        for prop in list(PROPERTY_ORDER) + sorted(p for p in by_prop if p not in PROPERTY_ORDER):
            if prop == "integrity":  # after robustness and Figure 4, before integrity
                lines += actors_section(actor_items)
            group = by_prop.get(prop)
            if not group:
                continue
            if prop == "imperceptibility":
                lines += imperceptibility_section(group)
            elif prop == "robustness":
                lines += robustness_section(group, plots)
            elif prop == "false_alarms":
                lines += false_alarms_section(group)
            elif prop == "overwriting":
                lines += overwriting_section(group, plots)
            elif prop == "fingerprint_unicity":
                lines += fingerprint_unicity_section(group)
            elif prop == "fingerprint_robustness":
                lines += fingerprint_robustness_section(group)
            elif prop == "integrity":
                lines += integrity_section(group)
            else:
                lines += generic_section(prop, group)
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
            name = _slug(f"overwriting-{node_label(c)}") + ".png"
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
