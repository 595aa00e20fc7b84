"""Tests of the pytest plugin (nnw.pytest_plugin) through real pytest runs of ``conformance/``.

Every run is a subprocess (``pytester.runpytest_subprocess``) with the tiny profile. The runs that
train share one model cache: the serial run of ``SELECTION`` starts from an empty cache and the
known-failure runs reuse what it trained; the xdist run starts from another empty cache, so that
comparing the two certificates checks that training in two worker processes gives the same numbers.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from nnw.cases import build_cases
from nnw.certificate import validate
from nnw.methods.registry import get_method
from nnw.profile import load_profile

pytest_plugins = ["pytester"]

REPO = Path(__file__).parents[1]
CONFORMANCE = REPO / "conformance"
TINY = REPO / "fixtures" / "profiles" / "tiny.json"
#: A small real run: NCT on ResNet8, unmodified / noise / pruning, both insertion epochs of the tiny grid.
SELECTION = "ResNet8 and NCT and (unmodified or noise or alpha0-pruning)"
TIMEOUT = 900

# Runs shared by several tests of this module (a test that needs one runs it if nobody has yet).
_RUNS: dict[str, dict] = {}
# Under `--dist loadgroup` the tests sharing these runs stay on one xdist worker.
pytestmark = pytest.mark.xdist_group("nnw-plugin")


@pytest.fixture(scope="session")
def plugin_dir(tmp_path_factory) -> Path:
    """A directory shared by the tests of this module: profiles, certificates, model caches."""
    return tmp_path_factory.mktemp("nnw-plugin")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    # the inner runs must not believe they are xdist workers of the outer run, nor read a user profile
    for var in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "NNW_PROFILE", "NNW_CACHE_DIR", "PYTEST_ADDOPTS"):
        monkeypatch.delenv(var, raising=False)


def _args(*extra, profile=TINY, cache=None, cert=None):
    args = [str(CONFORMANCE), "--nnw-profile", str(profile), "-p", "no:cacheprovider"]
    if cache is not None:
        args += ["--nnw-cache-dir", str(cache)]
    if cert is not None:
        args += ["--nnw-certificate", str(cert)]
    return args + [str(a) for a in extra]


def _items(result) -> list[str]:
    return [line.strip() for line in result.outlines if "::" in line and line.strip().startswith("conformance/")]


def _output(result) -> str:
    return "\n".join(result.outlines + result.errlines)


@pytest.fixture(scope="module")
def tiny_cases():
    return build_cases(load_profile(str(TINY)), [get_method(n) for n in ("NCT", "RTW", "TBW")])


# -- collection and -k -----------------------------------------------------------------------------
def _case_functions() -> dict[str, str]:
    """{conformance test function: the property of build_cases it is parametrized with}."""
    from nnw.pytest_plugin import CASE_FIXTURES

    out = {}
    for path in sorted(CONFORMANCE.glob("test_*.py")):
        for fn, first in re.findall(r"^def (test_\w+)\(\s*(\w+)", path.read_text(), flags=re.M):
            if first in CASE_FIXTURES:
                out[fn] = CASE_FIXTURES[first]
    return out


def _split(item: str) -> tuple[str, str]:
    """'conformance/test_x.py::test_fn[ID]' -> ('test_fn', 'ID')."""
    name = item.split("::", 1)[1]
    fn, _, rest = name.partition("[")
    return fn, rest[:-1]


@pytest.mark.parametrize("keyword, wanted", [
    ("NCT", lambda c: c.method == "NCT"),
    ("RTW and quantization", lambda c: c.method == "RTW" and "quantization" in c.id),
    ("VGG16", lambda c: c.task == "VGG16"),
], ids=["NCT", "RTW-and-quantization", "VGG16"])
def test_collect_ids_and_keyword_selection(pytester, tiny_cases, keyword, wanted):
    # in-process: collection only, and this worker has imported torch already (a subprocess pays ~5 s)
    # (importlib mode: this process may have imported tests/test_cost.py as module "test_cost" already)
    result = pytester.runpytest_inprocess(*_args("--collect-only", "-q", "--import-mode=importlib", "-k", keyword))
    assert result.ret == 0, _output(result)
    items = _items(result)
    assert items, _output(result)
    # every selected item matches the expression by its readable id ...
    words = [w for w in keyword.split() if w != "and"]
    assert all(all(w.lower() in item.lower() for w in words) for item in items), items
    # ... and the clause tests select exactly the cases a user expects
    functions = _case_functions()
    assert set(functions.values()) == set(tiny_cases), functions
    got = Counter(_split(i) for i in items if _split(i)[0] in functions)
    expected = Counter((fn, c.id) for fn, prop in functions.items() for c in tiny_cases[prop] if wanted(c))
    assert expected, keyword
    assert got == expected
    if keyword == "NCT":
        assert "conformance/test_robustness.py::test_robustness[NCT-ResNet8-alpha0-pruning-P50]" in items
        assert "conformance/test_false_alarms.py::test_false_alarms[NCT-VGG16-alpha2-unmodified]" in items
        assert "conformance/test_overwriting.py::test_overwriting[NCT-ResNet8-overwriting]" in items
        assert "conformance/test_fingerprinting.py::test_fingerprint_unicity[NCT-VGG16]" in items
        assert not [i for i in items if "RTW" in i or "TBW" in i]
    if keyword == "RTW and quantization":
        assert sorted(i for i in items if _split(i)[0] in functions) == [
            "conformance/test_false_alarms.py::test_false_alarms[RTW-ResNet8-quantization-B8]",
            "conformance/test_false_alarms.py::test_false_alarms[RTW-VGG16-quantization-B8]",
            "conformance/test_integrity.py::test_integrity[RTW-ResNet8-integrity-quantization-B8]",
            "conformance/test_integrity.py::test_integrity[RTW-VGG16-integrity-quantization-B8]",
            "conformance/test_robustness.py::test_robustness[RTW-ResNet8-quantization-B8]",
            "conformance/test_robustness.py::test_robustness[RTW-VGG16-quantization-B8]",
        ]
    if keyword == "VGG16":
        assert not [i for i in items if "ResNet8" in i]


def test_unknown_method_is_a_clear_error(pytester):
    result = pytester.runpytest_inprocess(*_args("--collect-only", "-q", "--import-mode=importlib", "--nnw-method", "NOPE"))
    assert result.ret != 0
    out = _output(result)
    assert "unknown traceability method 'NOPE'" in out
    assert "available: ['NCT', 'RTW', 'TBW'" in out
    assert not _items(result)


def test_plugin_import_does_not_import_torch():
    code = "import nnw.pytest_plugin, sys; assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


# -- a real run and its certificate ------------------------------------------------------------------
def _serial_run(pytester, plugin_dir) -> dict:
    """SELECTION, serially, from an empty model cache (run once per module)."""
    if "serial" not in _RUNS:
        cache = plugin_dir / "cache-serial"
        assert not cache.exists(), "the serial run must start from an empty cache"
        cert = plugin_dir / "serial-certificate.json"
        result = pytester.runpytest_subprocess(*_args("-k", SELECTION, cache=cache, cert=cert), timeout=TIMEOUT)
        _RUNS["serial"] = {"result": result, "cache": cache, "cert": cert}
    return _RUNS["serial"]


@pytest.mark.slow
def test_real_run_passes_and_writes_a_valid_certificate(pytester, plugin_dir):
    run = _serial_run(pytester, plugin_dir)
    result, cert_path = run["result"], run["cert"]
    cert = json.loads(cert_path.read_text())
    validate(cert)
    # the exit status follows the grade: 0 conformant, 6 incomplete (the tiny profile's population
    # is small: a clause whose assessable models give too little power is inconclusive, a skip)
    assert result.ret == cert["summary"]["exit_status"] == 6, _output(result)
    outcomes = result.parseoutcomes()
    n, undecided = outcomes.get("passed", 0), outcomes.get("skipped", 0)
    assert n >= 9 and not outcomes.get("failed") and not outcomes.get("errors")
    result.stdout.fnmatch_lines(["*nnw conformance summary*", "verdicts: *pass *", f"certificate: {cert_path}"])
    result.stdout.fnmatch_lines(["Robustness:", "  PASS * NCT-ResNet8-alpha0-noise-S0.01: *"])
    assert cert["summary"]["counts"].get("pass") == n and sum(cert["summary"]["counts"].values()) == n + undecided
    # a -k selection leaves mandatory clauses of NCT unevaluated: the grade says so (coverage table)
    assert cert["summary"]["grade"] == "incomplete" and cert["summary"]["not_evaluated"]
    cov = {r["id"]: r["status"] for r in cert["coverage"]["NCT"]}
    assert cov["robustness/noise"] == "evaluated" and cov["robustness/finetuning"] == "not assessed"
    assert [m["name"] for m in cert["methods"]] == ["NCT"]  # only the methods that were run
    assert cert["profile"]["name"] == "tiny"
    profile = load_profile(str(TINY))
    assert cert["seeds"] == {"model_seeds": profile.model_seeds, "key_seeds": profile.key_seeds}
    assert cert["environment"]["device"] == "cpu"
    clauses = cert["clauses"]
    assert len(clauses) == n + undecided
    assert [c["nodeid"] for c in clauses] == sorted(c["nodeid"] for c in clauses)
    by_id = {c["nodeid"]: c for c in clauses}
    rob = by_id["conformance/test_robustness.py::test_robustness[NCT-ResNet8-alpha0-pruning-P50]"]
    assert rob["clause"] == "NNW-TEC §7.2.6" and rob["table"] == "11"
    assert rob["modification"] and rob["config"]["alpha"] == 0 and rob["property"] == "robustness"
    assert len(rob["rows"]) == len(profile.model_seeds) * len(profile.key_seeds)  # the population
    fa = by_id["conformance/test_false_alarms.py::test_false_alarms[NCT-ResNet8-alpha2-unmodified]"]
    assert fa["clause"] == "IEEE 3304 false alarm rate" and fa["config"]["alpha"] == 2
    for c in clauses:
        assert c["verdict"] in ("pass", "inconclusive") and c["method"] == "NCT" and c["task"] == "ResNet8", c["nodeid"]
        assert c["clause"] and c["title"] and c["message"] and isinstance(c["measured"], dict)


def _json_diff(a, b, path="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}: keys {list(a)} != {list(b)}"] if list(a) != list(b) else []
        return out + [d for k in a if k in b for d in _json_diff(a[k], b[k], f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _json_diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r:.120} != {b!r:.120}"]


@pytest.mark.slow
def test_xdist_run_gives_the_same_certificate(pytester, plugin_dir):
    serial = _serial_run(pytester, plugin_dir)
    assert serial["result"].ret == 6, _output(serial["result"])  # incomplete: a -k selection
    cache, cert = plugin_dir / "cache-xdist", plugin_dir / "xdist-certificate.json"
    assert not cache.exists()
    result = pytester.runpytest_subprocess(*_args("-k", SELECTION, "-n", "2", "--dist", "loadgroup", cache=cache,
                                                  cert=cert), timeout=TIMEOUT)
    assert result.ret == serial["result"].ret, _output(result)
    assert result.parseoutcomes()["passed"] == serial["result"].parseoutcomes()["passed"]
    a, b = serial["cert"].read_text(), cert.read_text()
    assert a == b, "\n".join(_json_diff(json.loads(a), json.loads(b))[:20])


# -- known failures --------------------------------------------------------------------------------
XFAILS = """\
# deviations declared by the submitter: METHOD  node-id prefix  # reason
NCT  conformance/test_false_alarms.py::test_false_alarms[NCT-ResNet8-alpha0-   # full node id prefix
NCT  test_robustness[NCT-ResNet8-alpha0-noise   # declared, but it passes: reported
NCT  test_robustness[NCT-VGG16-   # matches nothing in this selection: reported
"""
#: false alarms (they fail: nominal rate 1e-9) and one robustness clause (it passes)
XFAIL_SELECTION = "NCT-ResNet8-alpha0-unmodified or NCT-ResNet8-alpha0-noise"
FA_UNMODIFIED = "conformance/test_false_alarms.py::test_false_alarms[NCT-ResNet8-alpha0-unmodified]"
FA_PRUNING = "conformance/test_false_alarms.py::test_false_alarms[NCT-ResNet8-alpha0-noise-S0.01]"
ROB_PRUNING = "conformance/test_robustness.py::test_robustness[NCT-ResNet8-alpha0-noise-S0.01]"


def _failing_profile(plugin_dir) -> Path:
    # a detector at 5 % can never look calibrated against a nominal rate of 1e-9 on 600 reads:
    # the clause fails, cheaply and surely
    path = plugin_dir / "tiny-failing.json"
    data = json.loads(TINY.read_text())
    data["decisions"]["nominal_false_alarm_rate"] = 1e-9
    path.write_text(json.dumps(data, indent=1))
    return path


def _xfail_run(pytester, plugin_dir) -> dict:
    if "xfail" not in _RUNS:
        cache = _serial_run(pytester, plugin_dir)["cache"]  # models already trained
        xfails = plugin_dir / "xfails.txt"
        xfails.write_text(XFAILS)
        cert = plugin_dir / "xfail-certificate.json"
        result = pytester.runpytest_subprocess(*_args("-k", XFAIL_SELECTION, "--nnw-xfails-file", xfails, "-rxX",
                                                      profile=_failing_profile(plugin_dir), cache=cache, cert=cert),
                                               timeout=TIMEOUT)
        _RUNS["xfail"] = {"result": result, "cert": cert}
    return _RUNS["xfail"]


@pytest.mark.slow
def test_xfails_file_turns_a_failing_clause_into_a_known_failure(pytester, plugin_dir):
    run = _xfail_run(pytester, plugin_dir)
    result = run["result"]
    assert result.ret == 6, _output(result)  # incomplete (a -k selection, a changed policy, stale declarations)
    outcomes = result.parseoutcomes()
    # strict, as pytest's strict xfail: the declared deviation whose clause passed fails its test
    assert outcomes.get("xfailed") == 2 and outcomes.get("failed") == 1
    result.stdout.fnmatch_lines(["*nnw conformance summary*", "*KNOWN FAILURE*NCT-ResNet8-alpha0-unmodified*"])
    cert = json.loads(run["cert"].read_text())
    validate(cert)
    verdicts = {c["nodeid"]: c["verdict"] for c in cert["clauses"]}
    assert verdicts[FA_UNMODIFIED] == verdicts[FA_PRUNING] == "known failure"
    assert cert["summary"]["verdict"] == "pass" and "fail" not in cert["summary"]["counts"]
    assert cert["summary"]["grade"] == "incomplete"  # a -k selection; the deviations are listed all the same
    assert {d["nodeid"] for d in cert["summary"]["deviations"]} == {FA_UNMODIFIED, FA_PRUNING}
    assert all(d["reason"] == "full node id prefix" and d["method"] == "NCT" and d["method_version"]
               for d in cert["summary"]["deviations"])
    # stale declarations are reported, as a strict xfail would flag them
    assert [d["nodeid"] for d in cert["summary"]["passing_deviations"]] == [ROB_PRUNING]
    assert [d["prefix"] for d in cert["summary"]["unmatched_deviations"]] == ["test_robustness[NCT-VGG16-"]
    result.stdout.fnmatch_lines(["*XPASS(strict)*", "declared deviation whose clause passed (remove it): *" + ROB_PRUNING + "*",
                                 "declared deviation that matched no clause: test_robustness[[]NCT-VGG16- *",
                                 "grade: incomplete (exit status 6) — *"])
    reasons = " ".join(cert["summary"]["grade_reasons"])
    assert "nominal_false_alarm_rate" in reasons and "whose clause passed" in reasons and "matching no clause" in reasons


def test_a_deviations_file_cannot_cover_everything(pytester):
    """A line like 'test_' (every failure of every method), an entry without a method or a reason, or
    one that names another method's clause, is refused with one clear usage error."""
    for bad, why in (("test_", "expected 'METHOD"), ("NCT  test_  # all", "does not name one clause family"),
                     ("NCT  test_robustness[RTW-  # other", "is not a clause of NCT"),
                     ("NCT  test_robustness[NCT-", "has no reason")):
        xfails = pytester.path / "bad.txt"
        xfails.write_text(bad + "\n")
        result = pytester.runpytest_inprocess(*_args("--collect-only", "-q", "--import-mode=importlib",
                                                     "-k", "NCT-ResNet8-alpha0-unmodified", "--nnw-xfails-file", xfails))
        assert result.ret == 4 and why in _output(result), (bad, _output(result))


@pytest.mark.slow
def test_declared_known_failure_that_passes_is_recorded_as_pass(pytester, plugin_dir):
    run = _xfail_run(pytester, plugin_dir)
    assert run["result"].parseoutcomes().get("failed") == 1   # XPASS(strict)
    verdicts = {c["nodeid"]: c["verdict"] for c in json.loads(run["cert"].read_text())["clauses"]}
    assert verdicts[ROB_PRUNING] == "pass"


@pytest.mark.slow
def test_failing_clause_without_xfails_file_fails_the_run(pytester, plugin_dir):
    cache = _serial_run(pytester, plugin_dir)["cache"]
    cert = plugin_dir / "failing-certificate.json"
    result = pytester.runpytest_subprocess(*_args("-k", "NCT-ResNet8-alpha0-unmodified",
                                                  profile=_failing_profile(plugin_dir), cache=cache, cert=cert),
                                           timeout=TIMEOUT)
    assert result.ret == 1, _output(result)
    assert result.parseoutcomes().get("failed") == 1
    out = _output(result)
    # the short summary names the test (its path is relative to the invocation directory)
    assert any(line.startswith("FAILED ") and FA_UNMODIFIED in line for line in result.outlines), out
    assert "IEEE 3304 false alarm rate — False alarms of NCT on never-marked ResNet8 models" in out  # the clause
    result.stdout.fnmatch_lines(["*nnw conformance summary*",
                                 "*FAIL*NCT-ResNet8-alpha0-unmodified*significantly above the nominal 1e-09*"])
    cert = json.loads(cert.read_text())
    validate(cert)
    assert [(c["nodeid"], c["verdict"]) for c in cert["clauses"]] == [(FA_UNMODIFIED, "fail")]
    assert cert["summary"]["counts"] == {"fail": 1} and cert["summary"]["grade"] == "not conformant"


def test_a_declared_known_failure_that_crashes_is_still_an_error(pytester):
    """The xfails file declares *failed clauses* (pytest.fail from record_clause); a crash in the same
    test (a bug, a bad key, a missing file) must not hide behind the declaration."""
    pytester.makepyfile(test_declared="""
        import pytest

        @pytest.mark.parametrize("case", ["Mine-a"])
        def test_robustness(case):
            pytest.fail("NNW-TEC clause failed", pytrace=False)

        @pytest.mark.parametrize("case", ["Mine-a"])
        def test_integrity(case):
            raise ValueError("unknown config key")
    """)
    xfails = pytester.path / "xfails.txt"
    xfails.write_text("# both declared\nMine  test_robustness[Mine-  # fails\nMine  test_integrity[Mine-  # crashes\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--nnw-xfails-file", str(xfails))
    outcomes = result.parseoutcomes()
    assert outcomes.get("xfailed") == 1 and outcomes.get("failed") == 1, _output(result)
    result.stdout.fnmatch_lines(["*ValueError: unknown config key*"])
