"""The example method package (examples/nnw-example-methods) and the example files of examples/.

Two layers:

* fast unit tests of the three example methods on a small hand-made network (no training), of
  the package's metadata (entry points, public-interface-only imports), and of the example files;
* end-to-end runs of the conformance suite itself (``pytester.runpytest_subprocess``), one per
  method, on a small selection of the tiny profile: the honest ``SignSpread`` passes, the weak
  ``WeakSmallest`` fails the robustness clause, the dishonest ``AlwaysPresent`` fails the
  false-alarm clause — each with a message naming the clause, the Modification and the measured
  value, and a certificate whose verdict says so.

The end-to-end runs share one model cache (session-scoped temporary directory), so the tiny
ResNet8 models are trained once per session (about 1.5 min on 2 busy CPU cores; each later run
takes about 20-30 s).

Profile: ``fixtures/profiles/tiny.json`` with one change, the pruning grid P = [5, 50] instead of
[50]. The tiny ResNet8 models reach only ~16% top-1 (10 classes, 128 test images), and after
pruning(P=50) the relative error of WeakSmallest's marked models is 4.8% or 14.3% (one or three
test images; it moved between the two when the suite pinned ``cpu_threads``), against the 10%
"useful" tolerance: on the "broken" side the robustness clause only records the row and
WeakSmallest's weakness would not show. pruning(P=5) (inside the IEEE 3304 range of 1-90%) leaves
the predictions unchanged and zeroes every weight WeakSmallest marked: a deterministic failure.
"""
from __future__ import annotations

import ast
import copy
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
CONFORMANCE = REPO / "conformance"
EXAMPLES = REPO / "examples"
PACKAGE_ROOT = EXAMPLES / "nnw-example-methods"
TINY = REPO / "fixtures" / "profiles" / "tiny.json"

#: Small selection: the ResNet8 robustness and false-alarm cases under pruning, and the
#: false-alarm case on unmodified models (5 tests per method).
SELECTION = "ResNet8 and (pruning or unmodified)"

METHODS = {
    "SignSpread": "nnw_example_methods.signspread:SignSpread",
    "WeakSmallest": "nnw_example_methods.weaksmallest:WeakSmallest",
    "AlwaysPresent": "nnw_example_methods.alwayspresent:AlwaysPresent",
}


@pytest.fixture(scope="module", autouse=True)
def _example_package_importable():
    """The unit tests import the example package from its directory, installed or not."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(PACKAGE_ROOT))
        yield


# ---------------------------------------------------------------------------------------------
# unit tests: the methods on a small untrained network
# ---------------------------------------------------------------------------------------------
def _net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 64), nn.ReLU(),
                         nn.Linear(64, 10))


def _method(name: str):
    from nnw.methods.registry import get_method

    return get_method(METHODS[name])


def _noisy(model: nn.Module, ratio: float, seed: int) -> nn.Module:
    out = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in out.parameters():
            p.add_(torch.randn(p.shape, generator=g) * p.std() * ratio)
    return out


@pytest.mark.parametrize("name", list(METHODS))
def test_example_method_protocol(name):
    """keygen is deterministic, embed leaves its input alone, a Key survives save/load, and a Key
    for another architecture is refused."""
    from nnw.methods.base import KeyMismatchError

    method, base = _method(name), _net(0)
    assert method.name == name and method.__doc__ and sys.modules[type(method).__module__].__doc__
    key = method.keygen(base, seed=3)
    assert key == method.keygen(base, seed=3)
    assert key != method.keygen(base, seed=4)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    marked = method.embed(base, key)
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    assert any(not torch.equal(before[k], v) for k, v in marked.state_dict().items())
    det = method.detect(marked, key)
    assert det.present and det.p_value is not None and det.score > det.threshold
    with pytest.raises(KeyMismatchError):
        method.detect(nn.Sequential(nn.Linear(4, 4)), key)


def test_example_key_file_roundtrip(tmp_path):
    from nnw.methods.keys import load_key, save_key

    method, base = _method("SignSpread"), _net(0)
    key = method.keygen(base, seed=1)
    marked = method.embed(base, key)
    loaded = load_key(save_key(tmp_path / "k.safetensors", key))
    assert loaded == key and method.detect(marked, loaded).present


def test_signspread_is_honest_on_a_small_network():
    """Present on the marked model (also after mild noise); absent on the model it was drawn from,
    on an independent model, and with another key; imperceptible in weight space."""
    method = _method("SignSpread")
    base, other = _net(0), _net(1)
    key = method.keygen(base, seed=0)
    marked = method.embed(base, key)
    assert method.detect(marked, key).present
    assert method.detect(_noisy(marked, 0.01, 0), key).present
    assert not method.detect(base, key).present      # relative change 0 everywhere: constant, p = 1
    assert not method.detect(other, key).present
    diff = [(a - b).abs().max() / b.abs().max() for a, b in zip(marked.state_dict().values(), base.state_dict().values())]
    assert max(float(d) for d in diff) <= key.config["epsilon"] + 1e-6
    assert sum(int((a != b).sum()) for a, b in zip(marked.parameters(), base.parameters())) == key.config["N"]


def test_signspread_false_alarm_rate_is_nominal():
    """Independent keys read on independently perturbed unmarked models: about 5% false alarms."""
    method, base = _method("SignSpread"), _net(0)
    n, alarms = 200, 0
    for s in range(n):
        key = method.keygen(base, seed=s)
        method.embed(base, key)
        alarms += method.detect(_noisy(base, 0.05, 10_000 + s), key).present
    assert alarms / n <= 0.10, f"{alarms}/{n} false alarms"


def test_weaksmallest_is_erased_by_light_magnitude_pruning():
    from nnw.layers import weight_layers

    method, base = _method("WeakSmallest"), _net(0)
    key = method.keygen(base, seed=0)
    marked = method.embed(base, key)
    assert method.detect(marked, key).present
    pruned = copy.deepcopy(marked)
    layers = weight_layers(pruned)
    flat = torch.cat([p.detach().abs().reshape(-1) for p in layers.values()])
    cut = torch.kthvalue(flat, int(0.05 * flat.numel())).values  # prune the 5% smallest weights
    with torch.no_grad():
        for p in layers.values():
            p.masked_fill_(p.abs() <= cut, 0)
    det = method.detect(pruned, key)
    assert not det.present and det.score == 0.0 and det.p_value == 1.0


def test_alwayspresent_always_says_present():
    method = _method("AlwaysPresent")
    key = method.keygen(_net(0), seed=0)
    for model in (_net(0), _net(1), _noisy(_net(2), 1.0, 0)):
        det = method.detect(model, key)
        assert det.present and det.details["honest_verdict"] is False


# ---------------------------------------------------------------------------------------------
# the package: entry points and public interface only
# ---------------------------------------------------------------------------------------------
def test_example_package_metadata():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    meta = tomllib.loads((PACKAGE_ROOT / "pyproject.toml").read_text())
    eps = meta["project"]["entry-points"]["nnw.methods"]
    assert eps == {name: path for name, path in METHODS.items()}
    assert (PACKAGE_ROOT / "README.md").is_file()


PUBLIC = {"nnw.methods.base", "nnw.metrics", "nnw.layers"}


@pytest.mark.parametrize("path", sorted((PACKAGE_ROOT / "nnw_example_methods").glob("*.py")), ids=lambda p: p.name)
def test_example_package_uses_only_the_public_interface(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "nnw":
            assert node.module in PUBLIC, f"{path.name}:{node.lineno} imports from {node.module}"
            assert not any(a.name.startswith("_") for a in node.names), f"{path.name}:{node.lineno} imports a private name"
        if isinstance(node, ast.Import):
            for a in node.names:
                assert a.name.split(".")[0] != "nnw" or a.name in PUBLIC, f"{path.name}:{node.lineno} imports {a.name}"


def test_xfails_example_file_format():
    """Every entry of the example and of the built-in methods' deviations parses (method, one clause
    family, reason) and names an existing conformance test function."""
    from importlib import resources

    from nnw.deviations import parse

    functions = {n.name for f in CONFORMANCE.glob("test_*.py")
                 for n in ast.parse(f.read_text()).body if isinstance(n, ast.FunctionDef)}
    for text, source in (((EXAMPLES / "xfails-example.txt").read_text(), "example"),
                         (resources.files("nnw.methods").joinpath("deviations.txt").read_text(), "built-in")):
        entries = parse(text, source)
        assert entries and all(d.reason for d in entries)
        for d in entries:
            assert d.family in functions, d
            if "::" in d.prefix:
                assert (CONFORMANCE.parent / d.prefix.split("::")[0]).is_file(), d


def test_github_workflow_example():
    """The CI example runs the suite with the method, known failures, certificate and Allure."""
    text = (EXAMPLES / "github-actions-certify.yml").read_text()
    for needle in ("pytest ", "--nnw-method", "--nnw-xfails-file", "--nnw-certificate", "--alluredir allure-results",
                   "npx --yes allure@3 generate allure-results -o allure-report", "if: always()",
                   "actions/upload-artifact"):
        assert needle in text, needle
    try:
        import yaml
    except ImportError:
        return
    wf = yaml.safe_load(text)
    assert wf["jobs"] and all(job["steps"] for job in wf["jobs"].values())


# ---------------------------------------------------------------------------------------------
# end-to-end: the conformance suite run on each example method
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def example_run_env(tmp_path_factory):
    """Shared model cache and the test profile (tiny + pruning P in {5, 50}, see module docstring)."""
    root = tmp_path_factory.mktemp("nnw-examples")
    profile = json.loads(TINY.read_text())
    profile["name"] = "tiny-examples"
    profile["description"] = "tests/test_examples.py: the tiny profile with pruning P in {5, 50}"
    profile["modifications"]["pruning"] = {"P": [5, 50]}
    path = root / "tiny-examples.json"
    path.write_text(json.dumps(profile, indent=1))
    return SimpleNamespace(root=root, cache=root / "cache", profile=path)


def run_conformance(pytester, monkeypatch, env, method: str, *extra: str):
    """Run the conformance suite on one method in a subprocess; return (result, certificate)."""
    cert = env.root / f"certificate-{method}.json"
    if cert.exists():
        cert.unlink()
    path = os.pathsep.join(p for p in (str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")) if p)
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setenv("COLUMNS", "400")  # keep the short test summary's messages whole
    result = pytester.runpytest_subprocess(
        str(CONFORMANCE), "-p", "no:cacheprovider", "-rfEx",
        "--nnw-profile", str(env.profile), "--nnw-cache-dir", str(env.cache), "--nnw-device", "cpu",
        "--nnw-method", METHODS[method], "--nnw-certificate", str(cert), "-k", SELECTION, *extra,
        timeout=900,
    )
    assert cert.is_file(), result.stdout.str()[-3000:]
    return result, json.loads(cert.read_text())


def _clauses(cert, test: str, verdict: str | None = None):
    return [c for c in cert["clauses"] if f"::{test}[" in c["nodeid"] and (verdict is None or c["verdict"] == verdict)]


def test_conformance_passes_the_honest_method(pytester, monkeypatch, example_run_env):
    result, cert = run_conformance(pytester, monkeypatch, example_run_env, "SignSpread")
    result.assert_outcomes(passed=7)  # incl. integrity (tag integrity): unmodified and pruning(P=5)
    assert cert["summary"]["counts"] == {"pass": 7} and cert["summary"]["verdict"] == "pass"
    # every clause run passed; the -k selection leaves mandatory families unevaluated: incomplete
    assert cert["summary"]["grade"] == "incomplete" and cert["summary"]["exit_status"] == 6
    assert all(r["status"] != "evaluated" or set(r["verdicts"]) == {"pass"} for r in cert["coverage"]["SignSpread"])
    assert [c["verdict"] for c in _clauses(cert, "test_integrity")] == ["pass", "pass"]
    assert [m["name"] for m in cert["methods"]] == ["SignSpread"]
    assert cert["methods"][0]["origin"] == "nnw_example_methods.signspread:SignSpread"
    assert cert["profile"]["name"] == "tiny-examples"
    for c in _clauses(cert, "test_robustness"):
        useful = [r for r in c["rows"] if r["useful"]]
        assert all(r["detected"] for r in useful)
    # a calibrated detector: false alarms at about its nominal rate, never significantly above it
    assert all(c["verdict"] == "pass" and c["measured"]["negatives"] >= 600 for c in _clauses(cert, "test_false_alarms"))


def test_conformance_fails_the_weak_method_on_robustness(pytester, monkeypatch, example_run_env):
    result, cert = run_conformance(pytester, monkeypatch, example_run_env, "WeakSmallest")
    # pruning(P=5) erases the mark of the still-useful model: a robustness failure. pruning(P=50)
    # erases it too, but whether the tiny model is still "useful" then hangs on one or two test
    # images (error 4.8% or 14.3% depending on the training's thread count): fail or recorded.
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 5 and outcomes.get("failed") in (1, 2), outcomes
    # the failure names the clause, the Modification with its Parameter, and what was measured
    result.stdout.fnmatch_lines([
        "FAILED *conformance/test_robustness.py::test_robustness[[]WeakSmallest-ResNet8-pruning-P5[]] - "
        "Failed: NNW-NNT Robustness — Robustness of WeakSmallest against pruning(P=5) on ResNet8: "
        "4/4 missed detections (rate 1.000, *): significantly above the nominal 0 * — seed 0 key 0: missed "
        "(relative error *",
    ])
    assert cert["summary"]["verdict"] == "fail" and cert["summary"]["grade"] == "not conformant"
    failed = {c["modification"]: c for c in _clauses(cert, "test_robustness", "fail")}
    assert "pruning(P=5)" in failed and set(failed) <= {"pruning(P=5)", "pruning(P=50)"}
    p5 = failed["pruning(P=5)"]
    assert p5["clause"] == "NNW-NNT Robustness"
    # the population: M = 2 model seeds x D = 2 marked versions
    assert p5["measured"]["detected"] == [False] * 4 and p5["measured"]["missed_detection_rate"] == 1.0
    assert p5["measured"]["score"] == [0.0] * 4 and p5["threshold"]["useful_error_rise_points"] == 5.0
    for c in _clauses(cert, "test_robustness"):  # the mark is gone after every pruning, useful or not
        assert not any(c["measured"]["detected"])
    # its detector is honest: no false-alarm failure
    assert not _clauses(cert, "test_false_alarms", "fail")


def test_conformance_fails_the_dishonest_method_on_false_alarms(pytester, monkeypatch, example_run_env):
    result, cert = run_conformance(pytester, monkeypatch, example_run_env, "AlwaysPresent")
    result.assert_outcomes(passed=4, failed=3)  # its integrity data are SignSpread's: those 2 pass
    result.stdout.fnmatch_lines([
        "FAILED *conformance/test_false_alarms.py::test_false_alarms[[]AlwaysPresent-ResNet8-unmodified[]] - "
        "Failed: IEEE 3304 false alarm rate — False alarms of AlwaysPresent on never-marked ResNet8 models (unmodified): "
        "600/600 false alarms (rate 1.000, 95% CI [[]0.994, 1.000[]]): significantly above the nominal 0.05*",
    ])
    assert cert["summary"]["verdict"] == "fail"
    failed = _clauses(cert, "test_false_alarms", "fail")
    assert len(failed) == 3
    for c in failed:
        assert c["clause"] == "IEEE 3304 false alarm rate"
        assert c["measured"]["false_alarm_rate"] == 1.0 and c["measured"]["false_alarms"] == c["measured"]["negatives"]
    assert not _clauses(cert, "test_robustness", "fail")


def test_conformance_xfails_file_turns_declared_failures_into_known_failures(pytester, monkeypatch,
                                                                            example_run_env):
    """examples/xfails-example.txt declares AlwaysPresent's false-alarm failures: the run passes
    and the certificate records them as "known failure"."""
    result, cert = run_conformance(pytester, monkeypatch, example_run_env, "AlwaysPresent",
                                   "--nnw-xfails-file", str(EXAMPLES / "xfails-example.txt"))
    result.assert_outcomes(passed=4, xfailed=3)
    assert cert["summary"]["counts"] == {"known failure": 3, "pass": 4}
    assert len(cert["summary"]["deviations"]) == 3 and cert["summary"]["grade"] == "incomplete"  # a -k selection
    assert {d["reason"] for d in cert["summary"]["deviations"]} == {'its detector says "present" on every model'}


def test_integrity_fails_when_the_traceability_data_miss_the_modified_weights(example_run_env):
    """Negative example for §3 Algorithmic Integrity: a SignSpread whose Traceability Data are only
    its marked weights — the largest ones — cannot see pruning of the smallest weights, and the
    integrity clause says so; the example's own data (marked weights + per-layer L1 norms) pass."""
    import importlib

    from nnw.cache import ModelCache
    from nnw.checks.integrity import check_integrity
    from nnw.modifications import parse_modification
    from nnw.profile import load_profile
    from nnw.zoo import Zoo

    honest = _method("SignSpread")

    class MarkOnly(type(honest)):
        def traceability_data(self, model, key, *, prepare=None):
            return W.read(model, key.tensors["indices"])

    W = importlib.import_module("nnw_example_methods._weights")
    profile = load_profile(str(example_run_env.profile))
    threads = torch.get_num_threads()
    torch.set_num_threads(int(profile.data.get("cpu_threads", 1)) or threads)
    try:
        zoo = Zoo(profile, ModelCache(example_run_env.cache), torch.device("cpu"))
        config = dict(honest.default_config)
        pruned = parse_modification("pruning(P=5)")
        blind = check_integrity(zoo, MarkOnly(), "ResNet8", config, pruned, model_seeds=[0, 1], key_seeds=[0, 1])
        assert blind.verdict == "fail" and blind.measured["judged_intact"] == len(blind.rows) == 4, blind.message
        assert all(r["changed_values"] == 0 for r in blind.rows)
        good = check_integrity(zoo, honest, "ResNet8", config, pruned, model_seeds=[0, 1], key_seeds=[0, 1])
        assert good.verdict == "pass" and all(r["changed_values"] > 0 for r in good.rows), good.message
    finally:
        torch.set_num_threads(threads)
