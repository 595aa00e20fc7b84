"""Figures of a conformance run, as PNG bytes (for Allure attachments and the Markdown report).

Every function takes clause records — the ``ClauseResult`` a check returns, or its dict form as
stored in the certificate (with the plugin's ``method``/``task``/``config``/``modification``/
``property`` keys) — and returns the PNG file as ``bytes``:

* :func:`robustness_plot` — the spec's Tables 4–21 as curves: the detection figure (NCT: Spearman
  rho; RTW: BER; TBW: share of the trigger set labelled as keyed, %) and the task error (eq. 2, %)
  against the Modification strength, one curve per key, the decision threshold drawn, and the
  published values of the same table (:mod:`nnw.spec`) as markers where the spec has them;
* :func:`overwriting_plot` — a replica of NNW-TEC Figure 4 (1st mark's score against the share
  of its weights shared with later marks, threshold line);
* :func:`insertion_time_plot` — a replica of NNW-TEC Figure 5 (insertion time against N);
* :func:`clause_plot` — dispatches on the clause type, for one test's attachment (``None`` when
  there is nothing to plot).

matplotlib is imported lazily and only its object-oriented API is used (``Figure`` +
``FigureCanvasAgg``): no pyplot, no global backend switch, safe inside a pytest run. The data
of every figure comes from :mod:`nnw.plotdata` (plain Python, shared with :mod:`nnw.report`; its
names are importable from here too).
"""
from __future__ import annotations

import io
import math
from typing import Any, Callable, Iterable, Mapping, Sequence

from nnw.plotdata import (CONTEXT_KEYS, SPEC_VERSION, DetectionFigure, PublishedCurve, RobustnessSeries, _f,
                          as_clause, detection_figure, group_robustness, identification_rows, infer_property,
                          modification_of, published_curve, robustness_series)
from nnw.spec.published import clause_rows

__all__ = ["png_bytes", "robustness_plot", "overwriting_plot", "insertion_time_plot", "imperceptibility_plot", "false_alarm_plot",
           "fingerprint_plot", "integrity_plot", "clause_plot",
           # the data helpers, from nnw.plotdata
           "DetectionFigure", "PublishedCurve", "RobustnessSeries", "as_clause", "detection_figure",
           "group_robustness", "identification_rows", "infer_property", "modification_of", "published_curve", "robustness_series"]


# -- drawing -------------------------------------------------------------------------------------
def _figure(ncols: int = 1, width: float = 6.4, height: float = 4.2, bottom: float = 0.6):
    """A figure of ``ncols`` axes with fixed margins (inches; ``bottom`` grows for long tick labels).
    Fixed margins, not a layout engine: constrained layout doubles the drawing time, and the plugin
    draws one figure per test."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    w, h = width * ncols, height + bottom - 0.6
    fig = Figure(figsize=(w, h), dpi=100)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.85 / w, right=1 - 0.2 / w, bottom=bottom / h, top=1 - 0.6 / h,
                        wspace=0.9 / width)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def png_bytes(fig) -> bytes:
    """A matplotlib Figure as PNG bytes (the figures' and the stress section's one encoder)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _cfg_text(config: Mapping[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (config or {}).items())


def _use_log_x(xs: Sequence[float], family: str | None) -> bool:
    pos = [x for x in xs if x > 0]
    return bool(pos) and len(pos) == len(xs) and (family == "noise" or max(pos) / min(pos) >= 50)


def _maybe_symlog(ax, values: Iterable[float | None]) -> None:
    vals = [abs(v) for v in values if v is not None and math.isfinite(v)]
    if vals and max(vals) > 100:
        ax.set_yscale("symlog", linthresh=1.0)


def robustness_plot(clauses_for_one_curve: Iterable[Any] | Any, *, version: str = SPEC_VERSION) -> bytes:
    """Detection figure and task error (eq. 2, %) against the Modification strength, one curve per
    key, with the decision threshold, the usefulness tolerance and the published NNW-TEC values.

    ``clauses_for_one_curve``: the robustness clauses of one method, task, configuration and
    Modification family (one clause per strength; a single clause gives one point per key). A
    single clause may be passed on its own.
    """
    if hasattr(clauses_for_one_curve, "as_dict") or isinstance(clauses_for_one_curve, Mapping):
        clauses_for_one_curve = [clauses_for_one_curve]
    s = robustness_series(clauses_for_one_curve, version=version)
    fig, (ax_det, ax_err) = _figure(2, height=4.0, bottom=1.35)
    xs_all: list[float] = []
    for i, (key, pts) in enumerate(sorted(s.keys.items(), key=lambda kv: str(kv[0]))):
        color = f"C{i % 10}"
        xs = [p[0] for p in pts]
        xs_all += xs
        label = f"key {key}" if isinstance(key, int) else str(key)
        ax_det.plot(xs, [p[1] for p in pts], "-o", color=color, label=label)
        lost = [(p[0], p[1]) for p in pts if p[3] is False and p[1] is not None]
        if lost:
            ax_det.plot(*zip(*lost), "x", color="red", markersize=10, mew=2,
                        label="not detected" if i == 0 else None)
        ax_err.plot(xs, [p[2] for p in pts], "-o", color=color, label=label)
    if s.thresholds:
        t = sorted(s.thresholds)[len(s.thresholds) // 2]
        ax_det.axhline(t, color="k", ls="--", lw=1, label=f"{s.figure.threshold_label} ({t:.3g})")
    if s.tolerance_percent is not None:
        ax_err.axhline(s.tolerance_percent, color="k", ls="--", lw=1,
                       label=f"usefulness tolerance ({s.tolerance_percent:g}%)")
    pub = s.published
    if pub is not None:
        xs_all += pub.x
        ax_det.plot(pub.x, pub.detection, "D:", color="0.35", mfc="none", label=pub.label)
        ax_err.plot(pub.x, pub.error, "D:", color="0.35", mfc="none", label=pub.label)
        _maybe_symlog(ax_err, pub.error + [p[2] for pts in s.keys.values() for p in pts])
    xlabel = f"{s.param} ({s.family} strength)" if s.param else (s.family or "Modification")
    for ax in (ax_det, ax_err):
        ax.set_xlabel(xlabel)
        if xs_all and _use_log_x(xs_all, s.family):
            ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, frameon=False)
    ax_det.set_ylabel(s.figure.label)
    ax_err.set_ylabel("error (eq. 2, %)")
    what = f"{s.method or '?'} on {s.task or '?'}" + (f" ({_cfg_text(s.config)})" if s.config else "")
    tables = f" — NNW-TEC Table {', '.join(s.tables)}" if s.tables else ""
    ax_det.set_title(f"Detection after {s.family}: {what}", fontsize=10)
    ax_err.set_title(f"Task error after {s.family}{tables}", fontsize=10)
    return png_bytes(fig)


def overwriting_plot(result: Any) -> bytes:
    """Replica of NNW-TEC Figure 4: the 1st mark's score against the share of its weights shared
    with (replaced by) the later Actors' marks, with the decision threshold."""
    c = as_clause(result)
    rows = sorted(c["rows"], key=lambda r: float(r.get("overlap", 0)))
    fig, (ax,) = _figure(1)
    x = [100 * float(r["overlap"]) for r in rows]
    y = [_f(r.get("first_mark_score")) for r in rows]
    ax.plot(x, y, "-o", color="C0", label="1st mark (Architect)")
    lost = [(xi, yi) for xi, yi, r in zip(x, y, rows) if r.get("first_mark_detected") is False]
    if lost:
        ax.plot(*zip(*lost), "x", color="red", markersize=10, mew=2, label="1st mark not detected")
    for xi, yi, r in zip(x, y, rows):
        found = [k[: -len("_detected")] for k, v in r.items()
                 if k.endswith("_detected") and k != "first_mark_detected" and v]
        n = len([k for k in r if k.endswith("_detected") and k != "first_mark_detected"])
        if n and yi is not None:
            ax.annotate(f"{len(found)}/{n} Actors", (xi, yi), textcoords="offset points", xytext=(4, 6), fontsize=7)
    th = [t for t in (_f(r.get("threshold")) for r in rows) if t is not None]
    if th:
        ax.axhline(th[0], color="k", ls="--", lw=1, label=f"threshold, Spearman 5% ({th[0]:.3g})")
    ax.axhline(0.018, color="0.6", ls=":", lw=1, label="Figure 4 as printed (y = 0.018)")
    max_ov = _f((c.get("threshold") or {}).get("max_overlap_asserted"))
    if max_ov is not None:
        ax.axvline(100 * max_ov, color="0.5", ls="-.", lw=1, label=f"asserted up to {100 * max_ov:g}% shared")
    ax.set_xlabel("weights shared with the later marks (%)")
    ax.set_ylabel("correlation of the 1st mark")
    ax.set_title(f"Watermark Overwriting (Figure 4): {c.get('method', '')} {c.get('task', '')}".strip(), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return png_bytes(fig)


def insertion_time_plot(ns: Sequence[float], seconds: Sequence[float] | Sequence[Sequence[float]], *,
                        method: str = "") -> bytes:
    """Replica of NNW-TEC Figure 5: execution time of the insertion against the number N of
    watermarked parameters. ``seconds[i]`` is one time or a list of repeated times for ``ns[i]``
    (plotted as the mean with a min–max bar)."""
    if len(ns) != len(seconds):
        raise ValueError(f"insertion_time_plot: {len(ns)} values of N but {len(seconds)} timings")
    fig, (ax,) = _figure(1)
    order = sorted(range(len(ns)), key=lambda i: ns[i])
    x, mean, lo, hi = [], [], [], []
    for i in order:
        t = seconds[i]
        ts = [float(v) for v in t] if isinstance(t, (list, tuple)) else [float(t)]
        m = sum(ts) / len(ts)
        x.append(float(ns[i]))
        mean.append(m)
        lo.append(m - min(ts))
        hi.append(max(ts) - m)
    ax.errorbar(x, mean, yerr=[lo, hi], fmt="-o", capsize=3, label=f"{method} insertion".strip())
    if x and min(x) > 0:
        ax.set_xscale("log")
    ax.set_xlabel("number of watermarked parameters N")
    ax.set_ylabel("insertion time (s)")
    ax.set_title("Execution time of the insertion vs N (Figure 5)" + (f": {method}" if method else ""), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return png_bytes(fig)


def imperceptibility_plot(result: Any) -> bytes:
    """Impact (eq. 1, %) per key and performance measure, with the bound, and the published value
    of NNW-TEC Tables 2/12/17 for the same model and configuration when the spec has one."""
    c = as_clause(result)
    rows = c["rows"]
    measures = sorted({k[len("impact_"):] for r in rows for k in r if k.startswith("impact_")})
    fig, (ax,) = _figure(1, bottom=0.8)
    width = 0.8 / max(1, len(measures))
    for j, m in enumerate(measures):
        xs = [i + j * width for i in range(len(rows))]
        vals = [_f(r.get(f"impact_{m}")) or 0.0 for r in rows]
        bars = ax.bar(xs, vals, width, label=f"Impact on {m}", color=f"C{j}")
        for b, r in zip(bars, rows):
            if r.get(f"within_spread_{m}"):
                b.set_hatch("//")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rows))])
    ax.set_xticklabels([f"key {r.get('key_seed', i)}" + ("" if r.get("detected", True) else "\n(not detected)")
                        for i, r in enumerate(rows)])
    bound = _f((c.get("threshold") or {}).get("impact_bound_percent"))
    if bound is not None:
        ax.axhline(bound, color="k", ls="--", lw=1, label=f"bound ({bound:g}%)")
    pub = _published_impact(c)
    if pub is not None:
        ax.axhline(pub[1], color="0.4", ls=":", lw=1.5, label=pub[0])
    ax.set_ylabel("Impact (eq. 1, %)")
    ax.set_title(f"Imperceptibility: {c.get('method', '')} on {c.get('task', '')} ({_cfg_text(c.get('config'))})"
                 "\nhatched: within the unmarked models' spread", fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return png_bytes(fig)


def _published_impact(c: Mapping[str, Any], version: str = SPEC_VERSION) -> tuple[str, float] | None:
    table = c.get("table")
    rows = clause_rows(table, task=c.get("task"), config=c.get("config"), version=version)
    if not rows:
        return None
    col = next((k for k in ("impact_error", "impact_top1", "impact") if k in rows[0]), None)
    if col is None or _f(rows[0].get(col)) is None:
        return None
    return f"NNW-TEC Table {table} (published {col} = {float(rows[0][col]):g}%)", float(rows[0][col])


def _score_strip(c: Mapping[str, Any], title: str, ylabel: str = "detection score",
                 value: Callable[[Mapping[str, Any]], float | None] | None = None) -> bytes:
    rows = c["rows"]
    fig, (ax,) = _figure(1, width=max(6.4, 0.55 * len(rows) + 2), bottom=1.3)
    value = value or (lambda r: _f(r.get("score")))
    xs = list(range(len(rows)))
    ys = [value(r) for r in rows]
    hit = [bool(r.get("detected")) for r in rows]
    ax.scatter([x for x, h in zip(xs, hit) if not h], [y for y, h in zip(ys, hit) if not h],
               color="C0", label="not detected (correct)")
    if any(hit):
        ax.scatter([x for x, h in zip(xs, hit) if h], [y for y, h in zip(ys, hit) if h],
                   color="red", marker="X", s=60, label="detected (false alarm)")
    th = [_f(r.get("threshold")) for r in rows]
    if any(t is not None for t in th):
        ax.scatter(xs, [t if t is not None else math.nan for t in th], marker="_", s=300, color="k",
                   label="threshold")
    ax.set_xticks(xs)
    ax.set_xticklabels([f"{r.get('model', '')}\nkey {r.get('key_seed', '')}" for r in rows], fontsize=7, rotation=30,
                       ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return png_bytes(fig)


def false_alarm_plot(result: Any) -> bytes:
    """Scores of the detector on every negative (never-marked model, or another actor's key)
    against the threshold, with the observed rate and its confidence interval."""
    c = as_clause(result)
    m = c.get("measured") or {}
    ci = m.get("false_alarm_ci") or [None, None]
    nominal = (c.get("threshold") or {}).get("nominal_false_alarm_rate")
    rate = f"{m.get('false_alarms', '?')}/{m.get('negatives', '?')} false alarms"
    if ci[0] is not None:
        rate += f", CI [{ci[0]:.3f}, {ci[1]:.3f}]"
    if nominal is not None:
        rate += f", nominal {nominal}"
    mod = c.get("modification") or "unmodified"
    return _score_strip(c, f"False alarms: {c.get('method', '')} on never-marked {c.get('task', '')} ({mod})\n{rate}")


def fingerprint_plot(result: Any) -> bytes:
    """Fingerprint matching scores per model (own entry vs best other entry; after a Modification:
    the score of the match, with the model's error)."""
    c = as_clause(result)
    rows = identification_rows(c)  # one bar per model: not the unicity clause's cross reads
    fig, (ax,) = _figure(1, bottom=1.0)
    xs = list(range(len(rows)))
    ax.bar([x - 0.2 for x in xs], [_f(r.get("score")) or 0.0 for r in rows], 0.4, label="match score")
    if any("other_score" in r for r in rows):
        ax.bar([x + 0.2 for x in xs], [_f(r.get("other_score")) or 0.0 for r in rows], 0.4,
               label="best other entry", color="C1")
    labels = []
    for r in rows:
        lab = f"{r.get('model', '')}\n→ {r.get('matched')}"
        if r.get("error_percent") is not None:
            lab += f"\nerror {float(r['error_percent']):.3g}%"
        labels.append(lab)
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("matching score")
    ax.set_title(f"{c.get('title', 'Fingerprinting')}", fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return png_bytes(fig)


def integrity_plot(result: Any) -> bytes:
    """Changed positions of the Traceability Data per model (0 = judged intact)."""
    c = as_clause(result)
    rows = c["rows"]
    fig, (ax,) = _figure(1)
    vals = [float(r.get("changed_positions", 0)) for r in rows]
    colors = ["C2" if r.get("intact") else "C3" for r in rows]
    ax.bar(range(len(rows)), vals, color=colors)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([str(r.get("model", i)) for i, r in enumerate(rows)])
    ax.set_ylabel("changed positions (0 = intact)")
    ax.set_title(c.get("title", "Integrity"), fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    return png_bytes(fig)


_DISPATCH: dict[str, Callable[[Any], bytes]] = {
    "robustness": robustness_plot,
    "overwriting": overwriting_plot,
    "imperceptibility": imperceptibility_plot,
    "false_alarms": false_alarm_plot,
    "fingerprint_unicity": fingerprint_plot,
    "fingerprint_robustness": fingerprint_plot,
    "integrity": integrity_plot,
}


def clause_plot(result: Any, **context: Any) -> bytes | None:
    """The figure of one test's clause, as PNG bytes; ``None`` when the clause has no rows or its
    type is unknown.

    ``result``: a ``ClauseResult`` or a clause dict (certificate form). ``context``: optional
    ``method``, ``task``, ``config``, ``modification``, ``property`` (the plugin's case), used
    where ``result`` lacks them; the clause type is ``property``, else inferred from the rows.
    """
    unknown = set(context) - set(CONTEXT_KEYS)
    if unknown:
        raise TypeError(f"clause_plot: unknown context {sorted(unknown)}; expected {list(CONTEXT_KEYS)}")
    c = as_clause(result, **context)
    if not c["rows"]:
        return None
    prop = infer_property(c)
    draw = _DISPATCH.get(prop or "")
    if draw is None:
        if any(_f(r.get("score")) is not None for r in c["rows"]):
            return _score_strip(c, c.get("title", ""))
        return None
    return draw(c)
