"""The Markdown report of a certificate (nnw/report.py) and the figures (nnw/plots.py).

Two certificates are rendered: one written by hand (every property, every verdict) and one built
by the real pipeline — the real check functions run on a fake zoo and a fake method, their
records completed as the plugin does and passed through ``nnw.certificate.build_certificate`` —
so the report is tested on exactly what the checks produce, without training a model.
"""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from nnw import plots
from nnw.certificate import build_certificate, validate
from nnw.report import CertificateError, load_certificate, main, render_markdown

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "fixtures" / "profiles" / "tiny.json"


def _png_size(data: bytes) -> tuple[int, int]:
    assert isinstance(data, bytes) and data[:8] == b"\x89PNG\r\n\x1a\n"
    im = Image.open(io.BytesIO(data))
    assert im.format == "PNG"
    size = im.size
    im.verify()
    assert size[0] > 100 and size[1] > 100
    return size


# ---------------------------------------------------------------------------------------------
# a certificate written by hand
# ---------------------------------------------------------------------------------------------
def _header(clauses: list[dict], methods=("NCT",)) -> dict:
    counts: dict[str, int] = {}
    for c in clauses:
        counts[c["verdict"]] = counts.get(c["verdict"], 0) + 1
    return {
        "schema_version": "1", "spec_version": "NNW-TEC-V1.0",
        "suite": {"name": "nnw-conformance", "version": "0.1.0"},
        "profile": {"name": "tiny", "source": "fixtures/profiles/tiny.json", "sha256": "ab" * 32},
        "methods": [{"name": m, "version": "1.0", "sha256": "cd" * 32, "origin": f"nnw.methods.{m.lower()}:{m}",
                     "tags": {"kind": "active", "insertion": "in-training", "detects": True, "decodes": m == "RTW",
                              "fingerprints": m == "NCT", "multi_mark": m == "NCT", "tasks": ["classification"]}}
                    for m in methods],
        "environment": {"python": "3.11.7", "torch": "2.5.0", "device": "cpu"},
        "seeds": {"model_seeds": [0, 1], "key_seeds": [0, 1]},
        "summary": {"verdict": "fail" if counts.get("fail") else "pass", "counts": dict(sorted(counts.items()))},
        "clauses": sorted(clauses, key=lambda c: c["nodeid"]),
    }


def _clause(test, case, prop, verdict, message, measured, threshold, rows, *, method="NCT", task="ResNet8",
            config=None, modification=None, table=None, clause="NNW-TEC §7.2.6", title=None):
    return {"nodeid": f"conformance/test_{test}.py::test_{test}[{case}]", "clause": clause,
            "title": title or f"{prop} of {method} on {task}", "verdict": verdict, "message": message,
            "measured": measured, "threshold": threshold, "rows": rows, "method": method, "task": task,
            "property": prop, "config": config if config is not None else {"alpha": 0, "N": 64},
            "table": table, **_modification_fields(modification)}


def _modification_fields(name):
    """A hand-written record's Modification fields, as the certificate carries them."""
    from nnw.checks.result import modification_fields
    from nnw.modifications import parse_modification

    return modification_fields(parse_modification(name) if name else None)


def _rob_rows(scores, errors, detected, threshold=0.207):
    return [{"key_seed": k, "error_percent": e, "useful": e <= 10, "top1": 0.8, "detected": d, "score": s,
             "threshold": threshold, "p_value": 1e-9 if d else 0.4}
            for k, (s, e, d) in enumerate(zip(scores, errors, detected))]


ROB_THRESHOLD = {"useful_error_tolerance_percent": 10.0, "detection": "Spearman rho, one-sided 5% (critical value from n)"}


@pytest.fixture
def hand_cert() -> dict:
    clauses = [
        _clause("imperceptibility", "NCT-ResNet8-alpha0", "imperceptibility", "pass",
                "Impact top1 1.2% (bound 10%)",
                {"impact_percent": {"top1": 1.2}, "impact_spread_over_keys": {"top1": 0.4},
                 "unmarked_spread": {"top1": 0.02}, "M": 2, "D": 2, "detected": 2},
                {"impact_bound_percent": 10.0},
                [{"key_seed": 0, "detected": True, "score": 0.99, "p_value": 1e-60, "top1_uwm": 0.8, "top1_wm": 0.79,
                  "impact_top1": 1.2, "within_spread_top1": True},
                 {"key_seed": 1, "detected": True, "score": 0.98, "p_value": 1e-55, "top1_uwm": 0.8, "top1_wm": 0.797,
                  "impact_top1": 0.4, "within_spread_top1": True}],
                table="2", clause="NNW-TEC §7.2.5", title="Imperceptibility of NCT on ResNet8 (alpha=0, N=64)"),
        _clause("robustness", "NCT-ResNet8-alpha0-pruning-P10", "robustness", "pass", "detected in all 2",
                {"error_percent": [0.5, 0.7]}, ROB_THRESHOLD, _rob_rows([0.99, 0.98], [0.5, 0.7], [True, True]),
                modification="pruning(P=10)", table="11"),
        _clause("robustness", "NCT-ResNet8-alpha0-pruning-P50", "robustness", "fail",
                "key 1: mark not detected after pruning(P=50) while the model is still useful",
                {"error_percent": [3.0, 4.0], "missed_detection_rate": 0.5}, ROB_THRESHOLD,
                _rob_rows([0.6, 0.1], [3.0, 4.0], [True, False]), modification="pruning(P=50)", table="11"),
        _clause("robustness", "NCT-ResNet8-alpha0-noise-S0.01", "robustness", "known failure", "declared | known",
                {"error_percent": [1.0, 2.0]}, ROB_THRESHOLD, _rob_rows([0.9, 0.1], [1.0, 2.0], [True, False]),
                modification="noise(S=0.01)", table="5"),
        _clause("false_alarms", "NCT-ResNet8-alpha0-unmodified", "false_alarms", "pass",
                "0/6 false alarms (rate 0.00, CI [0.000, 0.459]) — consistent with the nominal 0.05",
                {"false_alarms": 0, "negatives": 6, "false_alarm_rate": 0.0, "false_alarm_ci": [0.0, 0.45925812643990044],
                 "max_score": 0.08}, {"nominal_false_alarm_rate": 0.05, "confidence": 0.95},
                [{"model": "unmarked seed 0", "key_seed": 0, "detected": False, "score": 0.01, "threshold": 0.207,
                  "p_value": 0.5}], clause="IEEE 3304 false alarm rate"),
        _clause("overwriting", "NCT-ResNet8-overwriting", "overwriting", "pass", "all 5 Actors recovered",
                {"overlap": [0.0, 0.5], "first_mark_score": [1.0, 0.4]},
                {"max_overlap_asserted": 0.5, "detection": "Spearman one-sided 5%"},
                [{"overlap": q, "first_mark_score": s, "first_mark_detected": True, "threshold": 0.207,
                  **{f"{a}_detected": True for a in ("Architect", "Trainer", "Tracker", "Distributor", "Generic user")}}
                 for q, s in ((0.0, 1.0), (0.5, 0.4))],
                table="F4", clause="NNW-TEC §7.2.6 Figure 4"),
        _clause("fingerprinting", "NCT-ResNet8", "fingerprint_unicity", "pass", "each of 2 models matches itself",
                {"max_cross_score": 0.05}, {"match": "Spearman 5%"},
                [{"model": "seed 0", "matched": "seed 0", "score": 1.0, "best_other": None, "other_score": 0.05},
                 {"model": "seed 1", "matched": "seed 1", "score": 1.0, "best_other": None, "other_score": 0.02}],
                config={"N": 64}, clause="NNW-TEC §5.3.1 Unicity"),
        _clause("fingerprinting", "NCT-ResNet8-pruning-P50", "fingerprint_robustness", "pass", "2 matched",
                {"score": [0.9, 0.8]}, {"useful_error_tolerance_percent": 10.0},
                [{"model": "seed 0", "matched": "seed 0", "score": 0.9, "error_percent": 2.0, "useful": True},
                 {"model": "seed 1", "matched": "seed 1", "score": 0.8, "error_percent": 3.0, "useful": True}],
                config={"N": 64}, modification="pruning(P=50)", clause="NNW-TEC §5.3.1 Robustness"),
        _clause("integrity", "NCT-ResNet8-integrity-unmodified", "integrity", "pass", "2/2 models judged intact",
                {"judged_modified": 0, "models": 2}, {"judged": "intact"},
                [{"model": "seed 0", "intact": True, "changed_positions": 0, "max_abs_change": 0.0}],
                config={"N": 64}, clause="NNW-TEC §3 Algorithmic Integrity"),
        _clause("robustness", "RTW-VGG16-quantization-B8", "robustness", "not applicable", "not applicable to RTW",
                {}, {}, [], method="RTW", task="VGG16", config={"lam": 0.01}, modification="quantization(B=8)",
                table="15", clause="NNW-TEC §7.3.5"),
    ]
    cert = _header(clauses, methods=("NCT", "RTW"))
    validate(cert)
    return cert


def test_render_hand_built_certificate(hand_cert):
    md = render_markdown(hand_cert)
    lines = md.splitlines()
    assert lines[0] == "# nnw conformance report — FAIL"
    for needle in ("| spec | NNW-TEC-V1.0 (certificate schema 1) |", "NCT 1.0 (`nnw.methods.nct:NCT`)",
                   "| profile | tiny (`fixtures/profiles/tiny.json`, sha256 `abababababab`) |",
                   "python 3.11.7, torch 2.5.0, device cpu", "models 0 / 1; keys 0 / 1",
                   "| verdict | **FAIL** — 1 fail, 1 known failure, 7 pass, 1 not applicable (10 clauses) |"):
        assert needle in md, needle
    # failing clauses first, with message, measured value and threshold; the known failure after them
    fail_at, nct_at = md.index("## Failing clauses"), md.index("## NCT")
    assert fail_at < nct_at < md.index("## RTW")
    failing = md[fail_at:nct_at]
    assert failing.index("pruning-P50") < failing.index("noise-S0.01")
    assert "- **FAIL** `conformance/test_robustness.py::test_robustness[NCT-ResNet8-alpha0-pruning-P50]`" in failing
    assert "message: key 1: mark not detected after pruning(P=50) while the model is still useful" in failing
    assert "measured: error_percent = 3 / 4; missed_detection_rate = 0.5" in failing
    assert "threshold: useful_error_tolerance_percent = 10; detection = Spearman rho" in failing
    assert "- *known failure* `conformance/test_robustness.py::test_robustness[NCT-ResNet8-alpha0-noise-S0.01]`" in failing
    assert "declared \\| known" in failing  # a '|' in a message cannot break a table or list
    # imperceptibility: configuration, Impact, detection, the published Table 2 value
    assert "### Imperceptibility (NNW-TEC §7.2.5; NNW-TEC Table 2)" in md
    assert "| ResNet8 | alpha=0, N=64 | top1 1.2 | top1: 1.2 / 0.4 | top1 0.02 | 10 | 2/2 | Table 2: impact_top1 0 | pass |" in md
    # robustness: one table per Modification family, rows ordered by the parameter, published row beside
    assert "### Robustness against magnitude pruning (NNW-TEC §7.2.6; NNW-TEC Table 11)" in md
    assert "### Robustness against Gaussian noise addition (NNW-TEC §7.2.6; NNW-TEC Table 5)" in md
    p10 = "| ResNet8 | NCT | alpha=0, N=64 | 10 | 0.99 / 0.98 | 0.01 | 0.207 | 0.5 / 0.7 (0.6) | 2/2 | Table 11: 0.748, 0 | pass |"
    p50 = "| ResNet8 | NCT | alpha=0, N=64 | 50 | 0.6 / 0.1✗ | 0.5 | 0.207 | 3 / 4 (3.5) | 2/2 | Table 11: 0.75, 47 | **FAIL** |"
    assert p10 in md and p50 in md and md.index(p10) < md.index(p50)
    assert "| P | Spearman rho per key | spread over keys | threshold | error % per key (mean) |" in md
    # false alarms with rate and confidence interval
    assert "| ResNet8 | alpha=0, N=64 | unmodified | 0/6 | 0 | [0.000, 0.459] (95%) | 0.05 | 0.08 | pass |" in md
    # overwriting (Figure 4), fingerprinting, and a property the report has no layout for
    assert "| ResNet8 | NCT | 50% | 0.4 | 0.207 | yes | 5/5 | pass |" in md
    assert "### Fingerprint unicity (NNW-TEC §5.3.1 Unicity)" in md
    assert "| ResNet8 | NCT | pruning(P=50) | 2/2 | 2/2 | 2 / 3 | 0.9 / 0.8 | pass |" in md
    assert "### Integrity verification (NNW-TEC §3 Algorithmic Integrity)" in md
    # RTW: the BER column and the not-applicable clause
    rtw = md[md.index("## RTW"):]
    assert "### Robustness against quantization (NNW-TEC §7.3.5; NNW-TEC Table 15)" in rtw
    assert "BER per key" in rtw and "| n/a |" in rtw
    # every table row has as many cells as its header
    for block in md.split("\n\n"):
        rows = [r for r in block.splitlines() if r.startswith("|")]
        if rows:
            widths = {len(r.replace("\\|", "").split("|")) for r in rows}
            assert len(widths) == 1, block


def test_render_passing_certificate_says_none_failed(hand_cert):
    hand_cert["clauses"] = [c for c in hand_cert["clauses"] if c["verdict"] == "pass"]
    hand_cert["summary"] = {"verdict": "pass", "counts": {"pass": len(hand_cert["clauses"])}}
    validate(hand_cert)
    md = render_markdown(hand_cert)
    assert md.startswith("# nnw conformance report — PASS")
    assert "None: every clause passed or does not apply." in md
    assert "## RTW" not in md  # no clause of RTW left


@pytest.mark.parametrize("prop", ["imperceptibility", "robustness", "false_alarms", "overwriting",
                                  "fingerprint_unicity", "fingerprint_robustness", "integrity", "cost"])
def test_render_minimal_clauses(prop):
    """Only the schema's required keys (no rows, configuration, Modification or table): still rendered."""
    clause = {"nodeid": f"conformance/test_x.py::test_x[{prop}]", "clause": "c", "title": "t", "verdict": "fail",
              "message": "m", "measured": {}, "threshold": {}, "method": "Mine", "task": "ResNet8", "property": prop}
    cert = _header([clause], methods=("Mine",))
    validate(cert)
    md = render_markdown(cert)
    assert "## Mine" in md and "**FAIL**" in md.split("## Mine")[1]
    assert plots.clause_plot(clause) is None


# ---------------------------------------------------------------------------------------------
# a certificate built from what the real checks produce (fake zoo and method, no training)
# ---------------------------------------------------------------------------------------------
class FakeMethod:
    """A mark of strength 1 per key; pruning P scales it by (1 - P/100); detection: strength > 0.2.
    Later marks that share a share q of the 1st mark's positions scale it by (1 - q)."""

    name, version = "NCT", "1.0"
    tags = SimpleNamespace(kind="active", insertion="post-training", detects=True, decodes=False,
                           fingerprints=False, multi_mark=True, tasks=frozenset({"classification"}))

    def keygen(self, model, *, seed, config):
        return SimpleNamespace(id=f"k{seed}", overlap_with=config.get("overlap_with"), overlap=config.get("overlap", 0))

    def embed(self, model, key):
        marks = dict(model["marks"])
        if key.overlap_with is not None and key.overlap_with.id in marks:
            marks[key.overlap_with.id] *= 1 - key.overlap
        marks[key.id] = 1.0
        return {**model, "marks": marks}

    def traceability_data(self, model, key, *, prepare=None):
        return torch.tensor([model["marks"].get(key.id, 0.0)])

    def detect(self, model, key, *, prepare=None):
        from nnw.methods.base import Detection

        s = model["marks"].get(key.id, 0.0)
        return Detection(present=s > 0.2, score=s, threshold=0.2, p_value=0.001 if s > 0.2 else 0.5)


class FakeZoo:
    def __init__(self):
        from nnw.profile import load_profile

        self.profile = load_profile(str(TINY))
        self.device = torch.device("cpu")
        self.progress = lambda msg: None

    def task(self, name):
        return SimpleNamespace(performance_keys=("top1",), prepare=None)

    def unmarked(self, task, seed):
        return {"marks": {}, "top1": 0.80}, {"performance": {"top1": 0.80 + 0.002 * seed}}

    def marked(self, task, method, config, seed, d):
        d = d % 1000  # the population's key seeds (nnw.checks.campaign.population_key_seed)
        top1 = 0.80 - 0.004 * d
        key = SimpleNamespace(id=f"key{d}")
        return SimpleNamespace(model={"marks": {key.id: 1.0}, "top1": top1}, key=key,
                               record={"performance": {"top1": top1},
                                       "detection": {"present": True, "score": 1.0, "threshold": 0.2, "p_value": 1e-9}})

    def modified(self, task, model, modification, *, seed, identity, method, key):
        p = float(modification.params["P"])
        return {"marks": {k: v * (1 - p / 100) for k, v in model["marks"].items()},
                "top1": model["top1"] * (1 - p / 1000)}  # error = P/10 %

    def evaluate(self, task, model, identity):
        return {"top1": model["top1"]}


@pytest.fixture(scope="module")
def checks_cert() -> dict:
    from nnw.checks.imperceptibility import check_imperceptibility
    from nnw.checks.integrity import check_integrity
    from nnw.checks.negative import check_false_alarms
    from nnw.checks.overwriting import check_overwriting
    from nnw.checks.robustness import check_robustness
    from nnw.modifications import parse_modification
    from nnw.profile import load_profile

    zoo, method, cfg = FakeZoo(), FakeMethod(), {"alpha": 0, "N": 64}
    clauses = []

    def add(result, test, case, prop, modification=None):
        from nnw.checks.result import modification_fields

        d = result.as_dict()  # as nnw.pytest_plugin.record_clause and ClauseCollector store it
        d.update(method=method.name, task="ResNet8", config=dict(cfg), property=prop, **modification_fields(modification))
        d = json.loads(json.dumps(d, default=str))
        d["nodeid"] = f"conformance/test_{test}.py::test_{test}[{case}]"
        clauses.append(d)

    for p in (90, 10, 50):
        mod = parse_modification(f"pruning(P={p})")
        add(check_robustness(zoo, method, "ResNet8", cfg, mod, tolerance=0.1, table="11"),
            "robustness", f"NCT-ResNet8-alpha0-pruning-P{p}", "robustness", mod)
    add(check_imperceptibility(zoo, method, "ResNet8", cfg, table="2"), "imperceptibility", "NCT-ResNet8-alpha0", "imperceptibility")
    add(check_false_alarms(zoo, method, "ResNet8", cfg, None),
        "false_alarms", "NCT-ResNet8-alpha0-unmodified", "false_alarms")
    add(check_overwriting(zoo, method, "ResNet8", cfg, overlaps=[0.0, 0.5], marks=5, max_overlap=0.5),
        "overwriting", "NCT-ResNet8-overwriting", "overwriting")
    for mod in (None, parse_modification("pruning(P=10)")):
        add(check_integrity(zoo, method, "ResNet8", cfg, mod, model_seeds=[0, 1], key_seeds=[0, 1]), "integrity",
            f"NCT-ResNet8-integrity-{'unmodified' if mod is None else mod.id}", "integrity", mod)
    cert = build_certificate(load_profile(str(TINY)), [method], "cpu", clauses)
    validate(cert)
    return cert


def test_checks_certificate_is_what_the_checks_produce(checks_cert):
    by_case = {c["nodeid"].split("[")[1].rstrip("]"): c for c in checks_cert["clauses"]}
    assert by_case["NCT-ResNet8-alpha0-pruning-P90"]["verdict"] == "fail"  # useful (error 9%) but mark lost
    assert by_case["NCT-ResNet8-alpha0-pruning-P50"]["verdict"] == "pass"
    assert by_case["NCT-ResNet8-overwriting"]["verdict"] == "fail"  # 1st mark at 0.5**4 after four overlaps
    assert by_case["NCT-ResNet8-integrity-unmodified"]["verdict"] == "pass"
    assert by_case["NCT-ResNet8-integrity-pruning-P10"]["verdict"] == "pass"  # every pruned model judged modified
    summary = {k: v for k, v in checks_cert["summary"].items()
               if k not in ("not_evaluated", "grade_reasons", "beyond_useful_range", "policy_changes",
                            "unmatched_deviations")}
    assert summary == {"verdict": "fail", "counts": {"fail": 2, "pass": 6}, "grade": "not conformant",
                       "exit_status": 1, "deviations": [], "undecided": [], "passing_deviations": []}
    cov = {r["id"]: r for r in checks_cert["coverage"]["NCT"]}  # every clause of the registry, with its status
    assert cov["robustness/pruning"]["status"] == "evaluated" and cov["robustness/noise"]["status"] == "not assessed"
    assert "NCT: robustness/noise" in checks_cert["summary"]["not_evaluated"]


def test_render_checks_certificate(checks_cert):
    md = render_markdown(checks_cert)
    assert md.startswith("# nnw conformance report — FAIL")
    assert "**FAIL** — 2 fail, 6 pass (8 clauses)" in md
    failing = md[md.index("## Failing clauses"):md.index("## NCT")]
    assert "test_overwriting[NCT-ResNet8-overwriting]" in failing
    assert "test_robustness[NCT-ResNet8-alpha0-pruning-P90]" in failing
    assert "missed detections" in failing and "seed 0 key 0: missed" in failing
    assert "threshold: useful_error_tolerance_percent = 10; detection = Spearman rho" in failing
    rob = md[md.index("### Robustness against magnitude pruning"):]
    rows = [r for r in rob.split("\n\n")[1].splitlines()[2:]]
    assert [r.split(" | ")[3] for r in rows] == ["10", "50", "90"]  # ordered by the parameter
    assert rows[0].endswith("| 0.9 / 0.9 / 0.9 / 0.9 | 0 | 0.2 | 1 / 1 / 1 / 1 (1) | 4/4 | Table 11: 0.748, 0 | pass |")
    assert rows[2].endswith("| 0.1✗ / 0.1✗ / 0.1✗ / 0.1✗ | 0 | 0.2 | 9 / 9 / 9 / 9 (9) | 4/4 | Table 11: 0.732, 327 | **FAIL** |")
    assert "| ResNet8 | alpha=0, N=64 | unmodified | 0/600 | 0 | [0.000, 0.006] (95%) | 0.05 | 0 | pass |" in md
    assert "| ResNet8 | NCT | 50% | 0.0625 | 0.2 | no | 4/5 | **FAIL** |" in md
    # §7.2.6 stage by stage: after each later mark, which Actors are recovered (1st lost at 0.5**3 < 0.2)
    actors = md[md.index("### Actors recovered after each later mark"):]
    assert "| ResNet8 | Figure 4 | alpha=0, N=64 | 0% shared | Generic user | 5/5 | Architect, Trainer, Tracker, " \
           "Distributor, Generic user | – |" in actors
    assert "| ResNet8 | Figure 4 | alpha=0, N=64 | 50% shared | Tracker | 3/3 | Architect, Trainer, Tracker | – |" in actors
    assert "| 50% shared | Distributor | 3/4 | Trainer, Tracker, Distributor | Architect |" in actors
    # integrity: judged per model, rates with their confidence interval
    integ = md[md.index("### Integrity verification"):]
    # the population: M × D = 4 marked models (0 of 4 wrong: CI [0, 0.602], power 1 − 0.5⁴ ≥ 0.9)
    assert "| ResNet8 | alpha=0, N=64 | unmodified | intact | intact / intact / intact / intact | false alarm 0 " \
           "[0.000, 0.602] | pass |" in integ
    assert "| ResNet8 | alpha=0, N=64 | pruning(P=10) | modified | " + " / ".join(["modified (1 of 1 changed)"] * 4) + \
           " | missed detection 0 [0.000, 0.602] | pass |" in integ


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def test_cli_writes_markdown_and_linked_plots(tmp_path, checks_cert, capsys):
    cert = tmp_path / "cert.json"
    cert.write_text(json.dumps(checks_cert))
    out = tmp_path / "out" / "report.md"
    assert main([str(cert), "-o", str(out), "--plots", str(tmp_path / "out" / "figures")]) == 0
    md = out.read_text()
    assert md == render_markdown(checks_cert, plots={}) or "![" in md
    links = [line[line.index("](") + 2:-1] for line in md.splitlines() if line.startswith("![")]
    assert len(links) == 2  # one robustness curve (pruning), one overwriting clause
    for link in links:
        assert link.startswith("figures/")
        _png_size((out.parent / link).read_bytes())
    assert main([str(cert)]) == 0  # no -o: to standard output
    assert capsys.readouterr().out == render_markdown(checks_cert)


def _invalid(tmp_path: Path, kind: str) -> Path:
    p = tmp_path / "cert.json"
    if kind == "missing":
        return tmp_path / "absent.json"
    if kind == "not json":
        p.write_text("{ not json")
    elif kind == "schema":
        p.write_text(json.dumps({"schema_version": "1", "spec_version": "NNW-TEC-V1.0"}))
    elif kind == "verdict":
        cert = _header([_clause("robustness", "x", "robustness", "maybe", "m", {}, {}, [])])
        p.write_text(json.dumps(cert))
    return p


@pytest.mark.parametrize("kind, reason", [("missing", "no such file"), ("not json", "not JSON"),
                                          ("schema", "not a valid nnw certificate: 'suite' is a required property"),
                                          ("verdict", "not a valid nnw certificate: 'maybe' is not one of")])
def test_invalid_certificate_exits_2(tmp_path, capsys, kind, reason):
    path = _invalid(tmp_path, kind)
    assert main([str(path), "-o", str(tmp_path / "r.md")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and reason in err, err
    assert not (tmp_path / "r.md").exists()
    with pytest.raises(CertificateError):
        load_certificate(path)


def test_module_entry_point(tmp_path, hand_cert):
    """``python -m nnw.report``: exit 2 with the reason on an invalid file, 0 and Markdown otherwise."""
    bad = _invalid(tmp_path, "verdict")
    r = subprocess.run([sys.executable, "-m", "nnw.report", str(bad)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2 and "at clauses/0/verdict" in r.stderr and r.stdout == ""
    good = tmp_path / "good.json"
    good.write_text(json.dumps(hand_cert))
    r = subprocess.run([sys.executable, "-m", "nnw.report", str(good), "-o", str(tmp_path / "r.md")],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "r.md").read_text() == render_markdown(hand_cert)


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------
def test_modification_of_reads_the_record_fields():
    from nnw.checks.result import modification_fields
    from nnw.modifications import make_modification

    def of(family, **params):
        return plots.modification_of(modification_fields(make_modification(family, **params)))

    assert of("pruning", P=50) == ("pruning", "P", 50)
    assert of("noise", S=0.01, layers="fc.weight") == ("noise", "S", 0.01)
    assert of("distillation", E=1, T=4) == ("distillation", "E", 1)
    assert plots.modification_of(modification_fields(None)) == (None, None, None)
    assert plots.modification_of({"modification": "pruning(P=50)"}) == (None, None, None)  # never parsed


def test_published_curves_follow_the_spec_tables():
    nct = plots.published_curve("11", "NCT", "ResNet8", {"alpha": 0, "N": 64}, "P")
    assert nct.x == [10, 20, 50, 80, 90] and nct.detection[2] == 0.75 and nct.error[2] == 47
    assert "Table 11" in nct.label and "alpha=0" in nct.label
    assert plots.published_curve("11", "NCT", "ResNet8", {"alpha": 2}, "P") is None  # alpha 2 is not published
    rtw = plots.published_curve("16", "RTW", "VGG16", {"lam": 0.1}, "P")  # Table 16 is printed at lam = 0.01 only
    assert rtw.x == [10, 20, 50, 80, 90] and rtw.detection == [0] * 5 and rtw.error[1] == 0.5  # BER, error %
    assert "lam=0.01" in rtw.label
    tbw = plots.published_curve("21", "TBW", "VGG16", {"rho": 10}, "P")
    assert tbw.detection == [100, 100, 93, 14, 14]  # share %, Table 21 as corrected
    assert plots.published_curve(None, "NCT", "ResNet8", {}, "P") is None
    assert plots.published_curve("F4", "NCT", "ResNet8", {}, "P") is None


def test_robustness_series_and_plot(checks_cert):
    rob = [c for c in checks_cert["clauses"] if c["property"] == "robustness"]
    (curve,) = plots.group_robustness(checks_cert["clauses"]).values()
    assert [c["modification"] for c in curve] == ["pruning(P=10)", "pruning(P=50)", "pruning(P=90)"]
    s = plots.robustness_series(curve)
    assert (s.method, s.task, s.family, s.param) == ("NCT", "ResNet8", "pruning", "P")
    assert [p[0] for p in s.keys[(0, 0)]] == [10, 50, 90] and [p[3] for p in s.keys[(0, 0)]] == [True, True, False]
    assert s.thresholds and s.tolerance_percent == 10.0 and s.published.table == "11"
    assert _png_size(plots.robustness_plot(curve)) == _png_size(plots.robustness_plot(rob[0]))


@pytest.mark.parametrize("method, figure", [("NCT", "Spearman rho"), ("RTW", "BER"), ("TBW", "trigger-set share (%)"),
                                            ("Mine", "detection score")])
def test_detection_figure(method, figure):
    f = plots.detection_figure(method)
    assert f.label == figure
    row = {"score": 0.75, "threshold": 0.4, "ber": 0.25}
    assert f.value(row) == {"NCT": 0.75, "RTW": 0.25, "TBW": 75.0, "Mine": 0.75}[method]


def test_clause_plot_dispatches_on_every_clause_type(hand_cert, checks_cert):
    seen = set()
    for c in hand_cert["clauses"] + checks_cert["clauses"]:
        if c["property"] in seen:
            continue  # one figure per clause type is enough (each takes a fraction of a second)
        png = plots.clause_plot(c)
        if not c["rows"]:
            assert png is None
            continue
        _png_size(png)
        seen.add(c["property"])
    assert seen == {"imperceptibility", "robustness", "false_alarms", "overwriting", "fingerprint_unicity",
                    "fingerprint_robustness", "integrity"}


def test_clause_plot_of_a_bare_clause_result():
    """What the plugin holds in ``record_clause``: a ClauseResult, the case given as context (the
    Modification as its object; nothing is read from the title)."""
    from nnw.checks.result import ClauseResult
    from nnw.modifications import make_modification

    r = ClauseResult("NNW-TEC §7.2.6", "Robustness of NCT against pruning(P=50) on ResNet8", "pass", "ok",
                     {}, ROB_THRESHOLD, _rob_rows([0.9, 0.8], [1.0, 2.0], [True, True]), "11")
    mod = make_modification("pruning", P=50)
    c = plots.as_clause(r, method="NCT", task="ResNet8", modification=mod)
    assert (c["method"], c["task"], c["modification"]) == ("NCT", "ResNet8", "pruning(P=50)")
    assert (c["modification_family"], c["modification_params"]["P"]) == ("pruning", 50)
    assert "method" not in plots.as_clause(r)  # not read from the title
    with pytest.raises(TypeError, match="Modification object"):
        plots.as_clause(r, modification="pruning(P=50)")
    _png_size(plots.clause_plot(r, method="NCT", task="ResNet8", config={"alpha": 0, "N": 64},
                                modification=mod, property="robustness"))
    with pytest.raises(TypeError, match="unknown context"):
        plots.clause_plot(r, colour="red")
    assert plots.clause_plot(ClauseResult("x", "y", "pass", "m")) is None


def test_overwriting_and_insertion_time_plots(checks_cert):
    (ow,) = [c for c in checks_cert["clauses"] if c["property"] == "overwriting"]
    _png_size(plots.overwriting_plot(ow))
    _png_size(plots.insertion_time_plot([64, 512, 4096, 16144], [[0.01, 0.012], 0.02, 0.05, [0.2, 0.21, 0.19]]))
    with pytest.raises(ValueError, match="timings"):
        plots.insertion_time_plot([64, 512], [0.1])


def test_fingerprint_unicity_counts_models_not_cross_reads():
    from nnw.report_tables import fingerprint_unicity_section

    rows = ([{"kind": "identify", "model": f"m{i}", "matched": f"m{i}", "score": 0.9} for i in range(3)]
            + [{"kind": "cross", "model": "m0", "reference": f"m{i}", "matched": None, "score": 0.1} for i in (1, 2)])
    c = _clause("fingerprinting", "NCT-ResNet8", "fingerprint_unicity", "pass", "ok", {}, {}, rows)
    assert [r["model"] for r in plots.identification_rows(c)] == ["m0", "m1", "m2"]
    assert "| 3 |" in "\n".join(fingerprint_unicity_section([c]))
    _png_size(plots.fingerprint_plot(c))
