"""The adversarial stress section: attacks beyond the standard, reported beside the conformance verdicts.

``pytest conformance -m stress`` (marker ``stress``, deselected by default) runs the attacks of the
profile's ``"stress"`` block (function-preserving transformations, fine-pruning, extraction from
out-of-distribution queries, query-time input transformations and refusal of out-of-distribution
queries, false claims) on each method's marked models; the checks are in :mod:`nnw.checks.stress`.
Their records never become conformance clauses: they go to the certificate's separate ``"stress"``
key, to their own terminal section and to the "Adversarial stress" section of the Markdown report.
The pytest outcome of a stress test is a failure only when a method's *claimed* invariance fails.

Kept cheap at import (the pytest plugin imports it): torch and the library load lazily.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import pytest

from nnw.pytest_plugin import _jsonable  # one JSON fallback for the plugin's records

STRESS_PROPERTY = "nnw_stress"
CASE_FIXTURES = {"stress_case": "attack", "false_claim_case": "false_claim"}
DESCRIPTION = ("Adversarial stress beyond the standard (MPAI-NNW / NNW-TEC define none of these attacks): "
               "measurements, never conformance verdicts. An attack removes a mark only if the mark is no "
               "longer detected and the attacked model lost less than max_accuracy_drop_points of top-1 "
               "accuracy (the Watermark-Robustness-Toolbox rule).")


@dataclass(frozen=True)
class StressCase:
    kind: str                 # "attack" | "false_claim"
    method: str
    task: str
    config: tuple = ()
    attack: str | None = None  # canonical Modification name (attacks)
    id: str = ""
    group: str = ""

    def __repr__(self) -> str:
        return self.id

    @property
    def config_dict(self) -> dict[str, Any]:
        return dict(self.config)


def grid(profile) -> dict[str, Any]:
    """The profile's ``"stress"`` block (empty when the profile has none)."""
    return dict(profile.data.get("stress") or {})


def attacks(profile) -> list:
    """The attacks of the stress grid, as Modifications, in grid order."""
    from nnw.modifications import make_modification

    out = []
    for family, params in grid(profile).get("attacks", {}).items():
        for values in itertools.product(*params.values()):
            out.append(make_modification(family, **dict(zip(params.keys(), values))))
    return out


def key_seeds(profile, attack) -> list[int]:
    """Keys an attack is measured with: ``training_key_seeds`` for training-based attacks (costly)."""
    g = grid(profile)
    seeds = g.get("key_seeds", profile.key_seeds)
    if getattr(attack, "needs_training", False):
        seeds = g.get("training_key_seeds", seeds)
    return list(seeds)


def build_stress_cases(profile, methods: Iterable) -> dict[str, list[StressCase]]:
    """Every stress case: method × stress task × the first robustness configuration × attack, and one
    false-claim case per method × task. Only active, detecting classification methods apply."""
    from nnw.cases import case_id, configs, method_grid

    out: dict[str, list[StressCase]] = {"attack": [], "false_claim": []}
    g = grid(profile)
    if not g:
        return out
    mods = attacks(profile)
    for method in methods:
        tags = method.tags
        if tags.kind != "active" or not tags.detects or "classification" not in tags.tasks:
            continue
        cfg, label = configs(method_grid(profile, method, "robustness"))[0]
        for task in g.get("tasks", profile.classification_tasks):
            if profile.tasks[task]["task"] != "classification":
                raise ValueError(f"stress task {task!r} is not a classification task (accuracy budget rule)")
            group = case_id(method.name, task, label)
            for mod in mods:
                out["attack"].append(StressCase("attack", method.name, task, cfg, mod.name,
                                                case_id(method.name, task, label, mod.id), group))
            if g.get("false_claims"):
                out["false_claim"].append(StressCase("false_claim", method.name, task, cfg, None,
                                                     case_id(method.name, task, label), group))
    return out


def parametrize(metafunc) -> None:
    """``pytest_generate_tests`` of ``conformance/test_stress.py``: the stress cases of the profile."""
    wanted = [f for f in CASE_FIXTURES if f in metafunc.fixturenames]
    if not wanted:
        return
    from nnw.cases import run_methods, run_profile

    config = metafunc.config
    if not hasattr(config, "_nnw_stress_cases"):
        # only when asked for (-m naming "stress"): a run without the repository's addopts (pytester,
        # another rootdir) never trains the stress section's models by accident
        asked = "stress" in (config.getoption("markexpr", default="") or "")
        config._nnw_stress_cases = (build_stress_cases(run_profile(config), list(run_methods(config).values()))
                                    if asked else {k: [] for k in CASE_FIXTURES.values()})
    for name in wanted:
        params = [pytest.param(c, id=c.id, marks=[pytest.mark.xdist_group(c.group)])
                  for c in config._nnw_stress_cases[CASE_FIXTURES[name]]]
        metafunc.parametrize(name, params)


def record(request, *records: Mapping[str, Any]) -> None:
    """Attach stress records to the test (collected by :class:`StressCollector`); a failed claimed
    invariance fails the test."""
    failed = []
    for rec in records:
        request.node.user_properties.append((STRESS_PROPERTY, json.dumps(rec, default=_jsonable)))
        claim = rec.get("claim")
        if claim and claim.get("holds") is False:
            failed.append(f"{rec['method']} {rec['attack']}: {claim['message']}")
    if failed:
        pytest.fail("failed claim — " + "; ".join(failed), pytrace=False)


# -- the certificate's "stress" section ---------------------------------------------------------------
def section(records: list[dict[str, Any]], profile) -> dict[str, Any]:
    """The certificate's ``"stress"`` section from the collected records (sorted by node id)."""
    records = sorted(records, key=lambda r: r.get("nodeid", ""))  # stable: a test's records keep their order
    atk = [r for r in records if r["kind"] == "attack"]
    fc = [r for r in records if r["kind"] == "false_claim"]
    claims = [{"method": r["method"], "task": r["task"], "attack": r["attack"], **r["claim"]}
              for r in atk if r.get("claim")]
    g = grid(profile)
    return {
        "description": DESCRIPTION,
        "rule": {"max_accuracy_drop_points": g.get("max_accuracy_drop_points", 5.0)},
        "attacks": atk,
        "false_claims": fc,
        "claims": claims,
        "summary": {"attacks": len(atk),
                    "removed_all_keys": sum(r["keys"] > 0 and r["removed"] == r["keys"] for r in atk),
                    "removed_some_keys": sum(0 < r["removed"] < r["keys"] for r in atk),
                    "failed_claims": sum(c["holds"] is False for c in claims),
                    "false_claim_cases": len(fc), "false_claims": sum(r["claims"] for r in fc),
                    "false_claim_trials": sum(r["trials"] for r in fc)},
    }


def add_to_certificate(config, stress: dict[str, Any], written: Path | None) -> Path:
    """Add ``stress`` to the certificate written in this session (``written``), or write a certificate
    holding no conformance clause and the stress section (a ``-m stress`` run)."""
    from nnw import certificate as C

    if written is not None and Path(written).is_file():
        path = Path(written)
        cert = json.loads(path.read_text())
    else:
        from nnw.cases import run_methods, run_profile
        from nnw.device import resolve_device

        profile = run_profile(config)
        used = {r["method"] for r in stress["attacks"] + stress["false_claims"]}
        methods = [m for m in run_methods(config).values() if m.name in used]
        cert = C.build_certificate(profile, methods, str(resolve_device(config.getoption("--nnw-device")).type), [])
        path = Path(config.getoption("--nnw-certificate"))
        if not path.is_absolute():
            path = Path(config.invocation_params.dir) / path
    cert["stress"] = stress
    C.validate(cert)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".stress.tmp")
    tmp.write_text(json.dumps(cert, indent=1, sort_keys=False, default=_jsonable) + "\n")
    tmp.replace(path)
    return path


class StressCollector:
    """Collects the stress records (workers' too, through ``user_properties``); on the controller,
    adds the "stress" section to the certificate and prints its own terminal section."""

    def __init__(self, config):
        self.config = config
        self.records: list[dict[str, Any]] = []
        self.path: Path | None = None

    def pytest_runtest_logreport(self, report):
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == STRESS_PROPERTY:
                data = json.loads(value)
                data["nodeid"] = report.nodeid
                self.records.append(data)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session, exitstatus):
        if hasattr(self.config, "workerinput") or not self.records:
            return
        clauses = self.config.pluginmanager.get_plugin("nnw-clause-collector")
        written = getattr(clauses, "certificate_path", None)
        self.section = section(self.records, _profile_of(self.config))
        self.path = add_to_certificate(self.config, self.section, written)

    @pytest.hookimpl(trylast=True)
    def pytest_terminal_summary(self, terminalreporter, exitstatus, config):
        if hasattr(config, "workerinput") or not self.records:
            return
        terminalreporter.section("nnw adversarial stress (beyond the standard; not conformance verdicts)")
        for line in summary_lines(getattr(self, "section", None) or
                                  section(self.records, _profile_of(config))):
            terminalreporter.write_line(line)
        if self.path:
            terminalreporter.write_line(f"stress section written to: {self.path}")


def _profile_of(config):
    from nnw.cases import run_profile

    return run_profile(config)


def _id(r: Mapping[str, Any]) -> str:
    node = str(r.get("nodeid", ""))
    return node.split("[", 1)[1].rstrip("]") if "[" in node else f"{r['method']}-{r['task']}"


def _pts(values) -> str:
    return "/".join(f"{v:.1f}" for v in values)


def summary_lines(stress: Mapping[str, Any]) -> list[str]:
    """Terminal lines: one per attack and per false-claim measurement."""
    lines = [f"rule: {stress['description'].split('. ', 1)[-1]}"]
    for r in stress["attacks"]:
        claim = r.get("claim")
        verdict = {True: "holds", False: "FAILED", None: "not tested"}[claim["holds"]] if claim else ""
        extra = f"  [claim {claim['invariance']}: {verdict}]" if claim else ""
        lines.append(f"  {r['outcome'].upper():32.32s} {_id(r)}: removed {r['removed']}/{r['keys']} keys, detected "
                     f"{r['detected']}/{r['keys']}, accuracy drop {_pts(r['accuracy_drop_points'])} points{extra}")
    for r in stress["false_claims"]:
        lo, hi = r["claim_ci"]
        lines.append(f"  FALSE CLAIMS {r['claims']}/{r['trials']:<18} {_id(r)} {r['attack']}: "
                     f"rate {r['claim_rate']:.2f} "
                     f"[{lo:.2f}, {hi:.2f}] on independent never-marked models (own model "
                     f"{r['own_model_claim_rate']:.2f}); {r['strategy']}")
    s = stress["summary"]
    lines.append(f"stress: {s['attacks']} attacks, {s['removed_all_keys']} removed the mark for every key, "
                 f"{s['removed_some_keys']} for some; {s['failed_claims']} failed claims; false claims "
                 f"{s['false_claims']}/{s['false_claim_trials']}")
    return lines


# -- Markdown report and figures -------------------------------------------------------------------------
def _md_table(header, rows) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return out + [""]


def _fmt(x, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def markdown(stress: Mapping[str, Any] | None, plots: Mapping[Any, str] | None = None) -> list[str]:
    """The report's "Adversarial stress" section (empty when the certificate has none)."""
    if not stress:
        return []
    plots = plots or {}
    s = stress["summary"]
    lines = ["## Adversarial stress (beyond the standard; not conformance verdicts)", "",
             stress["description"], "",
             f"{s['attacks']} attacks: {s['removed_all_keys']} removed the mark for every key, "
             f"{s['removed_some_keys']} for some keys; {s['failed_claims']} failed claimed invariances; "
             f"false claims {s['false_claims']} of {s['false_claim_trials']} trials.", ""]
    if stress["attacks"]:
        rows = []
        for r in stress["attacks"]:
            dets = " / ".join(("yes" if x["detected"] else ("no (key does not fit)" if not x.get("key_fits", True)
                                                             else "no")) for x in r["rows"])
            scores = " / ".join(_fmt(x.get("score")) for x in r["rows"])
            claim = r.get("claim")
            rows.append([r["method"], r["task"], ", ".join(f"{k}={v}" for k, v in r["config"].items()) or "–",
                         f"`{r['attack']}`", dets, scores, _pts(r["accuracy_drop_points"]),
                         f"{r['removed']}/{r['keys']}"
                         + (f" ({r['not_inserted']} not inserted)" if r.get("not_inserted") else ""),
                         f"**{r['outcome']}**" if r["removed"] else r["outcome"],
                         "–" if not claim else f"{claim['invariance']}: "
                         + {True: "holds", False: "**FAILED**", None: "not tested"}[claim["holds"]]])
        lines += ["### Removal attacks", ""]
        lines += _md_table(["method", "task", "config", "attack", "detected per key", "score per key",
                            "accuracy drop (points) per key", "removed", "outcome", "claimed invariance"], rows)
        for key, path in sorted((k, v) for k, v in plots.items() if isinstance(k, tuple) and k[:1] == ("stress",)):
            lines += [f"![stress {key[1]} {key[2]}]({path})", ""]
    failed = [c for c in stress["claims"] if c["holds"] is False]
    if failed:
        lines += ["### Failed claims", ""]
        lines += [f"- {c['method']} on {c['task']}, `{c['attack']}`: {c['message']}" for c in failed] + [""]
    if stress["false_claims"]:
        rows = []
        for r in stress["false_claims"]:
            lo, hi = r["claim_ci"]
            rows.append([r["method"], r["task"], f"`{r['attack']}`", r["strategy"], f"{r['claims']}/{r['trials']}",
                         f"{r['claim_rate']:.2f} [{lo:.2f}, {hi:.2f}]", _fmt(r["own_model_claim_rate"]),
                         _fmt(r.get("mean_score")), _fmt(r.get("max_score"))])
        lines += ["### False claims (crafted keys against independent never-marked models)", ""]
        lines += _md_table(["method", "task", "crafted key", "strategy", "claims", "rate [95% CI]",
                            "claims own model", "mean score", "max score"], rows)
    return lines


def stress_plot(records: list[Mapping[str, Any]], title: str, max_drop: float) -> bytes:
    """One figure per method and task: per attack, the share of keys whose mark it removed / that are
    still detected (left) and the accuracy drop per key with the budget dashed (right)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from nnw.plots import png_bytes

    n = len(records)
    fig = Figure(figsize=(10.0, 1.2 + 0.32 * n), dpi=100)
    FigureCanvasAgg(fig)
    h = 1.2 + 0.32 * n
    fig.subplots_adjust(left=0.28, right=0.98, bottom=0.55 / h, top=1 - 0.55 / h, wspace=0.08)
    ax, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    ys = list(range(n))[::-1]
    keys = [max(1, r["keys"]) for r in records]
    removed = [r["removed"] / k for r, k in zip(records, keys)]
    detected = [r["detected"] / k for r, k in zip(records, keys)]
    ax.barh(ys, removed, color="#c0392b", label="removed (undetected, < budget)")
    ax.barh(ys, detected, left=removed, color="#27ae60", label="still detected")
    costly = [r["too_costly"] / k for r, k in zip(records, keys)]
    ax.barh(ys, costly, left=[a + b for a, b in zip(removed, detected)], color="#95a5a6",
            label="lost, but too costly")
    ax.set_xlim(0, 1)
    ax.set_yticks(ys)
    ax.set_yticklabels([r["attack"] for r in records], fontsize=8)
    ax.set_xlabel("share of keys")
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=3, fontsize=7, frameon=False)
    for y, r in zip(ys, records):
        d = r["accuracy_drop_points"]
        ax2.plot(d, [y] * len(d), "kD", markersize=4)
    ax2.axvline(max_drop, color="k", linestyle="--", linewidth=0.8)
    ax2.set_yticks(ys)
    ax2.set_yticklabels([])
    ax2.set_ylim(ax.get_ylim())
    ax2.set_xlabel("accuracy drop (points), budget dashed")
    fig.suptitle(title, fontsize=10)
    return png_bytes(fig)


def write_plots(stress: Mapping[str, Any] | None, directory: Path, base: str) -> dict[Any, str]:
    """Write one stress figure per method and task; the mapping ``("stress", method, task) -> path``."""
    if not stress or not stress.get("attacks"):
        return {}
    groups: dict[tuple, list] = {}
    for r in stress["attacks"]:
        groups.setdefault((r["method"], r["task"]), []).append(r)
    out = {}
    for (method, task), items in groups.items():
        name = f"stress-{method}-{task}.png".replace("/", "_")
        (Path(directory) / name).write_bytes(
            stress_plot(items, f"{method} on {task}: attacks beyond the standard",
                        stress["rule"]["max_accuracy_drop_points"]))
        out[("stress", method, task)] = f"{base}/{name}"
    return out


__all__ = ["CASE_FIXTURES", "STRESS_PROPERTY", "StressCase", "StressCollector", "add_to_certificate", "attacks",
           "build_stress_cases", "grid", "key_seeds", "markdown", "parametrize", "record", "section",
           "stress_plot", "summary_lines", "write_plots"]
