"""Tests of nnw.cost (computational cost, NNW-TEC §7.2.7, §7.3.6, §7.4.6, Table 23, Figure 5) on
tiny models and data, and of the cost module of the conformance suite (``conformance/test_cost.py``):
it must fail loudly when pytest-benchmark does not measure, and put its clauses in the certificate.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from nnw import cost
from nnw.checks import cost as verdicts
from nnw.cost import cases as cost_cases_module
from nnw.cost import memory
from nnw.certificate import build_certificate, validate
from nnw.checks.result import FAIL, PASS
from nnw.data.imageset import ImageSet
from nnw.hooks import TrainingHook
from nnw.methods.base import Detection, Decoding, Key, Tags, TraceabilityMethod
from nnw.methods.nct import NCT
from nnw.methods.rtw import RTW
from nnw.methods.tbw import TBW
from nnw.profile import load_profile
from nnw.tasks import Task
from nnw.training import Recipe

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

pytest_plugins = ["pytester"]

REPO = Path(__file__).parents[1]
TINY = REPO / "fixtures" / "profiles" / "tiny.json"


# --------------------------------------------------------------------------- helpers
def tiny_cnn(seed: int = 0) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(16 * 2 * 2, 10),
        )


def tiny_task(n: int = 64, epochs: int = 4, batch_size: int = 8) -> Task:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (n,), generator=g)
    return Task("tiny", "classification", "none", {}, Recipe(epochs=epochs, batch_size=batch_size, lr=0.05),
                ImageSet(x, y), ImageSet(x[:16], y[:16]), num_classes=10)




@pytest.fixture(scope="module")
def task() -> Task:
    return tiny_task()


class CountingHook(TrainingHook):
    def __init__(self):
        self.steps = 0

    def after_step(self, model, ctx):
        self.steps += 1


class SleepHook(TrainingHook):
    """Costs ``per_step`` seconds per batch iteration (in extra_loss) and ``at_epoch_start`` once per epoch."""

    def __init__(self, per_step: float = 0.0, at_epoch_start: float = 0.0):
        self.per_step, self.at_epoch_start = per_step, at_epoch_start

    def on_epoch_start(self, model, epoch, ctx):
        time.sleep(self.at_epoch_start)

    def extra_loss(self, model, ctx):
        time.sleep(self.per_step)
        return None


class FakeMethod(TraceabilityMethod):
    """Its mark is 'present' once its hook has seen ``after`` steps; BER reaches 0 after ``ber0_after``."""

    name, version = "Fake", "0"

    def __init__(self, insertion="in-training", decodes=False):
        self.tags = Tags(kind="active", insertion=insertion, detects=True, decodes=decodes, fingerprints=False,
                         multi_mark=False, tasks=frozenset({"classification"}))

    def keygen(self, model, *, seed, config=None):
        return Key(self.name, dict(config or {"after": 5, "ber0_after": 7}), {"t": torch.zeros(4)}, {})

    def check_key(self, model, key):
        pass

    def training_hook(self, key, *, prepare=None):
        hook = CountingHook()
        hook.key = key
        key.cache["hook"] = hook
        return hook

    def embed(self, model, key):
        key.cache["embedded"] = True
        return model

    def _steps(self, key):
        hook = key.cache.get("hook")
        return 1_000_000 if key.cache.get("embedded") else (0 if hook is None else hook.steps)

    def detect(self, model, key, *, prepare=None):
        s = self._steps(key)
        return Detection(present=s >= key.config["after"], score=float(s), threshold=float(key.config["after"]))

    def decode(self, model, key):
        s = self._steps(key)
        return Decoding(payload=torch.zeros(4), ber=0.0 if s >= key.config.get("ber0_after", 0) else 0.25)


# --------------------------------------------------------------------------- settings
def test_settings_defaults_and_profile_overrides():
    assert cost.cost_settings(None) == cost.SETTINGS
    s = cost.cost_settings({"cost": {"steps": 2, "check_every": 4}})
    assert s["steps"] == 2 and s["check_every"] == 4 and s["rounds"] == cost.SETTINGS["rounds"]
    with pytest.raises(ValueError, match="unknown cost setting"):
        cost.cost_settings({"cost": {"stepz": 2}})
    with pytest.raises(ValueError, match="'steps' must be an int >= 1"):
        cost.cost_settings({"cost": {"steps": 0}})
    with pytest.raises(ValueError, match="'check_every' must be null or an int >= 1"):
        cost.cost_settings({"cost": {"check_every": 0}})


# --------------------------------------------------------------------------- batch iteration time
def test_timed_training_runs_exactly_warmup_plus_steps_iterations(task):
    counter = CountingHook()
    timing = cost.timed_training(task, tiny_cnn(), [counter], steps=5, warmup=2)
    assert counter.steps == 7
    assert len(timing.iteration_seconds) == 5 and all(t > 0 for t in timing.iteration_seconds)
    assert timing.warmup == 2
    assert timing.total_seconds >= sum(timing.iteration_seconds)
    assert timing.mean == pytest.approx(sum(timing.iteration_seconds) / 5)


def test_timed_training_cycles_epochs_when_the_train_set_is_small():
    small = tiny_task(n=24)  # 3 batches of 8 per epoch
    counter = CountingHook()
    timing = cost.timed_training(small, tiny_cnn(), [counter], steps=6, warmup=1)
    assert counter.steps == 7 and len(timing.iteration_seconds) == 6


def test_timed_training_rejects_bad_sizes(task):
    with pytest.raises(ValueError, match="steps"):
        cost.timed_training(task, tiny_cnn(), steps=0)
    with pytest.raises(ValueError, match="warmup"):
        cost.timed_training(task, tiny_cnn(), steps=1, warmup=-1)


def test_iteration_time_counts_per_step_hook_cost_but_not_epoch_start_insertion(task):
    slow_start = cost.timed_training(task, tiny_cnn(), [SleepHook(at_epoch_start=0.3)], steps=3, warmup=0)
    assert max(slow_start.iteration_seconds) < 0.3  # an insertion at epoch start is not a batch iteration
    c = cost.compare_batch_iteration_time(task, tiny_cnn, SleepHook(per_step=0.03), steps=3, warmup=1, rounds=3)
    assert c.marked_seconds - c.baseline_seconds >= 0.025
    assert c.increase_percent > 0


def test_batch_iteration_time_takes_none_a_hook_or_a_factory(task):
    made = []

    def factory(model):
        made.append(model)
        return CountingHook()

    for hook in (None, CountingHook(), factory):
        assert cost.batch_iteration_time(task, tiny_cnn, hook, steps=2, warmup=0) > 0
    assert len(made) == 1 and isinstance(made[0], nn.Module)
    with pytest.raises(TypeError, match="TrainingHook"):
        cost.batch_iteration_time(task, tiny_cnn, 42, steps=1)


def test_iteration_cost_arithmetic():
    c = cost.IterationCost([1.0, 1.1, 0.9], [1.5, 1.5, 1.6])
    assert c.baseline_seconds == 1.0 and c.marked_seconds == 1.5
    assert c.increase_percent == pytest.approx(50.0)
    assert c.baseline_spread_percent == pytest.approx(20.0)
    assert c.mean_increase_percent is None
    fast, slow = cost.StepTiming([1.0, 1.0, 4.0], 1, 7.0), cost.StepTiming([2.0, 2.0, 2.0], 1, 7.0)
    c = cost.IterationCost.from_timings([fast], [slow])
    assert c.baseline_rounds == [1.0] and c.baseline_means == [2.0]  # a round's figure is its median
    assert c.increase_percent == pytest.approx(100.0) and c.mean_increase_percent == pytest.approx(0.0)


def test_nct_hook_costs_nothing_per_iteration_beyond_noise(task):
    nct = NCT()
    c = cost.compare_batch_iteration_time(
        task, tiny_cnn, lambda m: nct.training_hook(nct.keygen(m, seed=0, config={"N": 64}), prepare=task.prepare),
        steps=4, warmup=1, rounds=1)
    assert c.marked_seconds > 0 and c.baseline_seconds > 0  # NCT inserts at epoch start: nothing per iteration


# --------------------------------------------------------------------------- iterations to insert
@pytest.mark.parametrize("every, expected", [(1, 5), (2, 6), (4, 8), (5, 5)])
def test_iterations_to_insert_is_the_first_check_that_finds_the_mark(task, every, expected):
    m = FakeMethod()
    model = tiny_cnn()
    run = cost.iterations_to_insert(task, m, m.keygen(model, seed=0), model, check_every=every)
    assert run.iterations == expected and run.inserted
    assert run.check_every == every and run.budget == 32 and run.steps_run == expected
    assert run.detection.present
    assert run.history[0] == (0, 0.0)  # checked once before the first iteration
    assert not run.model.training


def test_iterations_to_insert_waits_for_ber_zero_on_decoding_methods(task):
    m = FakeMethod(decodes=True)
    model = tiny_cnn()
    run = cost.iterations_to_insert(task, m, m.keygen(model, seed=0), model, check_every=1)
    assert run.iterations == 7 and run.ber == 0.0


def test_iterations_to_insert_reports_none_when_the_budget_runs_out(task):
    m = FakeMethod()
    model = tiny_cnn()
    run = cost.iterations_to_insert(task, m, m.keygen(model, seed=0), model, check_every=2, max_steps=3)
    assert run.iterations is None and not run.inserted
    assert run.budget == 3 and run.steps_run == 3
    assert run.history[-1] == (3, 3.0)  # the last iteration of the budget is always checked
    big = cost.iterations_to_insert(task, m, m.keygen(model, seed=0, config={"after": 10**6}), tiny_cnn(),
                                    max_steps=10**9)
    assert big.budget == 32 and big.iterations is None  # never more than the full training


def test_iterations_to_insert_post_training_and_passive(task):
    m = FakeMethod(insertion="post-training")
    model = tiny_cnn()
    run = cost.iterations_to_insert(task, m, m.keygen(model, seed=0), model)
    assert run.iterations == 0 and run.key.cache["embedded"]
    passive = FakeMethod()
    passive.tags = Tags(kind="passive", insertion="none", detects=True, decodes=False, fingerprints=True,
                        multi_mark=False, tasks=frozenset({"classification"}))
    with pytest.raises(ValueError, match="inserts no mark"):
        cost.iterations_to_insert(task, passive, passive.keygen(model, seed=0), model)


def test_iterations_to_insert_nct_is_zero_by_substitution(task):
    nct = NCT()
    model = tiny_cnn()
    key = nct.keygen(model, seed=0, config={"N": 64})
    run = cost.iterations_to_insert(task, nct, key, model, check_every=1)
    assert run.iterations == 0 and run.steps_run == 0
    assert "original" in run.key.tensors and run.detection.present


def test_iterations_to_insert_rtw_trains_until_ber_zero(task):
    rtw = RTW()
    model = tiny_cnn()
    key = rtw.keygen(model, seed=0, config={"lam": 1.0, "T": 32})
    run = cost.iterations_to_insert(task, rtw, key, model, check_every=2)
    assert run.iterations is not None and run.iterations > 0 and run.iterations % 2 == 0
    assert run.ber == 0.0 and rtw.detect(run.model, run.key).present
    assert run.seconds > 0 and run.check_seconds > 0


def test_iterations_to_insert_tolerates_undetectable_before_insertion(task):
    nct = NCT()
    model = tiny_cnn()
    key = nct.keygen(model, seed=0, config={"N": 64, "alpha": 1})  # no Original Traceability Data before epoch 1
    run = cost.iterations_to_insert(task, nct, key, model, check_every=1)
    assert run.iterations == 8  # one epoch of 8 batches, then inserted at the start of epoch 1
    assert isinstance(run.detection, Detection) and run.detection.present


# --------------------------------------------------------------------------- memory
def test_peak_memory_cpu_sees_a_large_allocation():
    def alloc():
        t = torch.ones(8 * 2**20)  # 32 MiB, touched
        return float(t[-1])

    out, peak = cost.peak_memory(alloc, "cpu")
    assert out == 1.0
    assert peak.source in ("VmHWM", "ru_maxrss", "unavailable")
    if peak.source == "VmHWM":
        assert peak.bytes >= 16 * 2**20


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_peak_memory_cuda_is_exact():
    out, peak = cost.peak_memory(lambda: torch.empty(2**20, device="cuda").fill_(1).sum().item(), "cuda")
    assert out == 2**20 and peak.source == "cuda.max_memory_allocated" and peak.bytes >= 4 * 2**20


def test_tensor_bytes_counts_each_storage_once_and_skips_modules_and_exclusions():
    a = torch.zeros(100)  # 400 bytes
    b = torch.zeros(10, dtype=torch.float64)  # 80 bytes
    model = tiny_cnn()
    holder = SimpleNamespace(a=a, view=a[10:20], nested={"b": [b, (b,)]}, model=model, fn=len)
    assert cost.tensor_bytes(holder) == 480
    assert cost.tensor_bytes(holder, exclude=memory._owned_storages(nn.Module())) == 480
    key = Key("X", {}, {"t": torch.zeros(4)}, {}, cache={"c": torch.zeros(2)})
    assert cost.tensor_bytes(key) == 24
    p = model[0].weight
    assert cost.tensor_bytes([p, a], exclude=memory._owned_storages(model)) == 400


def test_training_footprint_counts_the_method_state_and_the_extra_batch(task):
    tbw = TBW()
    base = cost.training_footprint(task, tiny_cnn(), None)
    model = tiny_cnn()
    key = tbw.keygen(model, seed=0, config={"n_triggers": 8, "rho": 8, "shape": [3, 8, 8]})
    marked = cost.training_footprint(task, model, tbw.training_hook(key, prepare=task.prepare))
    n_params = sum(p.numel() * 4 for p in tiny_cnn().parameters())
    assert base.parameters == marked.parameters == n_params
    assert base.gradients == base.optimizer_state == n_params  # SGD: one momentum buffer per parameter
    assert base.method_state == 0
    assert marked.method_state >= 8 * 3 * 8 * 8 * 4  # the prepared triggers held on the device
    assert marked.activations > base.activations  # rho = 8 triggers concatenated to the batch of 8
    assert marked.total > base.total
    d = marked.as_dict()
    assert d["total"] == marked.total and d["peak_source"] == marked.peak.source


def test_training_footprint_rtw_holds_its_projection_matrix(task):
    rtw = RTW()
    model = tiny_cnn()
    key = rtw.keygen(model, seed=0, config={"T": 32})
    fp = cost.training_footprint(task, model, lambda m: rtw.training_hook(key))
    assert fp.method_state >= key.tensors["X"].numel() * 4


# --------------------------------------------------------------------------- inference and detection
def test_inference_time_restores_the_mode(task):
    model = tiny_cnn().train()
    s = cost.inference_time(model, task.prepare(task.test.x[:8]), rounds=3, warmup=1)
    assert s > 0 and model.training


def test_detection_cost_is_cold_and_times_decoding(task):
    nct = NCT()
    model = tiny_cnn()
    _, key = cost.insertion(nct, model, seed=0, config={"N": 64})
    assert "original" in key.tensors
    dc = cost.detection_cost(nct, model, key, rounds=3, warmup=1)
    assert dc.seconds > 0 and dc.seconds_min <= dc.seconds and dc.rounds == 3
    assert dc.detection.present and dc.decode_seconds is None
    assert "plan" in key.cache  # the memory pass ran last, from a cold key
    rtw = RTW()
    rkey = rtw.keygen(model, seed=0, config={"T": 32})
    rc = cost.detection_cost(rtw, model, rkey, rounds=2, warmup=0)
    assert rc.decode_seconds is not None and rc.decode_seconds > 0
    assert "cost_decoded_ber" in cost.run_detection(rtw, model, rkey).details


def test_insertion_in_place_or_by_embed():
    nct = NCT()
    model = tiny_cnn()
    before = model[3].weight.detach().clone()
    marked, key = cost.insertion(nct, model, seed=1, config={"N": 512})
    assert marked is model and not torch.equal(before, model[3].weight)
    assert nct.detect(model, key).present
    fake = FakeMethod(insertion="post-training")
    marked, key = cost.insertion(fake, model, seed=0)
    assert key.cache["embedded"]


# --------------------------------------------------------------------------- growth of the detection time
def test_nlogn_check_and_slope():
    ns = [64, 512, 4096, 16144]
    linear = {n: 1e-6 * n for n in ns}
    assert cost.nlogn_violations(linear) == []
    assert cost.loglog_slope(linear) == pytest.approx(1.0)
    nlogn = {n: 1e-7 * n * math.log(n) for n in ns}
    assert cost.nlogn_violations(nlogn, slack=1.0 + 1e-9) == []
    quadratic = {n: 1e-9 * n * n for n in ns}
    bad = cost.nlogn_violations(quadratic)
    assert bad and all(v["time_ratio"] > v["bound"] for v in bad)
    assert cost.loglog_slope(quadratic) == pytest.approx(2.0)
    assert cost.loglog_slope({n: 0.001 for n in ns}) == pytest.approx(0.0)
    assert math.isnan(cost.loglog_slope({64: 1.0}))


# --------------------------------------------------------------------------- clause records
def _run(iterations):
    det = Detection(present=iterations is not None, score=1.0, threshold=0.5)
    return cost.InsertionRun(iterations, 3, 248, 12, 1.0, 0.1, tiny_cnn(), Key("RTW", {}, {}, {}), det, 0.0)


def _fp():
    return cost.Footprint(100, 10, 100, 100, 1000, 0, cost.PeakMemory(None, "unavailable"))


def test_injection_clause_passes_with_table23_and_fails_when_never_inserted():
    it = cost.IterationCost([1.0], [1.2])
    ok = verdicts.injection_clause(RTW(), "ResNet8", {"lam": 0.01}, iteration=it, run=_run(12), footprint_unmarked=_fp(),
                               footprint_marked=_fp(), inference_unmarked=0.1, inference_marked=0.1, device="cpu")
    assert ok.verdict == PASS and ok.table == "23" and ok.property == "cost"
    assert ok.clause == "NNW-TEC §7.3.6 Computational cost"
    assert ok.measured["batch_iterations_to_insert"] == 12
    assert ok.measured["increased_batch_iteration_time_percent"] == pytest.approx(20.0)
    assert ok.measured["published_table23"]["batch_iterations_to_insert"] == 500
    assert "Table 23 published" in ok.message
    json.dumps(ok.as_dict())  # JSON-able: it lands in the certificate and in benchmark.extra_info
    bad = verdicts.injection_clause(RTW(), "ResNet8", {"lam": 0.01}, iteration=it, run=_run(None),
                                footprint_unmarked=_fp(), footprint_marked=None, inference_unmarked=0.1,
                                inference_marked=0.1, device="cpu")
    assert bad.verdict == FAIL and "not found within the budget of 248" in bad.message


def test_cost_clauses_fit_the_certificate_schema():
    times = {64: 0.001, 512: 0.002, 4096: 0.004}
    records = [
        verdicts.complexity_clause("NCT", "ResNet8", times, slack=3.0, device="cpu"),
        verdicts.insertion_time_clause("NCT", "ResNet8", 64, 78000, seconds=0.01, seconds_min=0.009, rounds=5,
                                   present=True, device="cpu"),
        verdicts.detection_clause(TBW(), "ResNet8", {"rho": 10}, seconds=0.3, seconds_min=0.2, rounds=5,
                              cost=cost.DetectionCost(0.3, 0.2, 1, cost.PeakMemory(0, "VmHWM"),
                                                      Detection(True, 0.9, 0.4), None),
                              marked=True, device="cpu"),
    ]
    assert [r.verdict for r in records] == [PASS] * 3
    assert verdicts.insertion_time_clause("NCT", "R", 64, 100, seconds=1, seconds_min=1, rounds=1, present=False,
                                      device="cpu").verdict == FAIL
    quadratic = verdicts.complexity_clause("NCT", "ResNet8", {n: 1e-9 * n * n for n in (64, 16144)}, slack=3.0,
                                       device="cpu")
    assert quadratic.verdict == FAIL and "faster than n log n" in quadratic.message
    clauses = [{**r.as_dict(), "nodeid": f"conformance/test_cost.py::t[{i}]"} for i, r in enumerate(records)]
    cert = build_certificate(load_profile(str(TINY)), [NCT(), TBW()], "cpu", clauses)
    validate(cert)
    assert verdicts.cost_clause("Other") == "NNW-NNT Computational cost"


# --------------------------------------------------------------------------- the conformance module
def test_unmeasured_cost_tests_fail_with_instructions():
    mod = cost_cases_module
    with pytest.raises(pytest.fail.Exception, match="run them in a serial pass: pytest conformance -m cost"):
        mod.require_measuring(SimpleNamespace(disabled=True))
    mod.require_measuring(SimpleNamespace(disabled=False))


def test_cost_cases_follow_the_methods_and_the_profile():
    mod = cost_cases_module
    config = SimpleNamespace(getoption=lambda name: {"--nnw-profile": str(TINY), "--nnw-method": None}[name])
    cases = mod.cost_cases(config)
    assert [c.id for c in cases["injection_case"]] == ["NCT-ResNet8", "RTW-ResNet8", "TBW-ResNet8"]
    assert [c.id for c in cases["detection_case"]] == ["NCT-ResNet8", "RTW-ResNet8", "TBW-ResNet8"]
    assert [c.n for c in cases["insertion_time_case"]] == [64, 4096, 16144]  # tiny NCT grid {64} + Figure 5's
    assert cases["complexity_case"][0].ns == (64, 4096, 16144)
    assert dict(cases["injection_case"][0].config)["alpha"] == 0  # insertion at initialization preferred


@pytest.fixture
def clean_env(monkeypatch):
    for var in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "NNW_PROFILE", "NNW_CACHE_DIR", "PYTEST_ADDOPTS"):
        monkeypatch.delenv(var, raising=False)


def _profile_with_small_cost(tmp_path) -> Path:
    data = json.loads(TINY.read_text())
    data["name"] = "tiny-cost"
    data["cost"] = {"steps": 2, "warmup_steps": 1, "rounds": 1, "warmup_rounds": 0, "detection_rounds": 2,
                    "inference_rounds": 1, "insertion_rounds": 2, "figure5_extra_N": [512]}
    path = tmp_path / "tiny-cost.json"
    path.write_text(json.dumps(data))
    return path


def test_cost_pass_fails_loudly_when_benchmarks_are_disabled(pytester, clean_env, tmp_path):
    result = pytester.runpytest_subprocess(
        str(REPO / "conformance" / "test_cost.py"), "-m", "cost", "-p", "no:cacheprovider", "--benchmark-disable",
        "--nnw-profile", str(_profile_with_small_cost(tmp_path)), "--nnw-cache-dir", str(tmp_path / "cache"),
        "--nnw-device", "cpu", "--nnw-certificate", str(tmp_path / "cert.json"), "-k", "NCT and insertion_time",
        timeout=600)
    out = "\n".join(result.outlines + result.errlines)
    result.assert_outcomes(failed=2)
    assert "cost tests ran without measuring: run them in a serial pass: pytest conformance -m cost -p no:xdist" in out


@pytest.mark.slow
def test_cost_pass_measures_and_certifies(pytester, clean_env, tmp_path):
    cert, bench = tmp_path / "cert.json", tmp_path / "bench.json"
    result = pytester.runpytest_subprocess(
        str(REPO / "conformance" / "test_cost.py"), "-m", "cost", "-p", "no:cacheprovider",
        "--nnw-profile", str(_profile_with_small_cost(tmp_path)), "--nnw-cache-dir", str(tmp_path / "cache"),
        "--nnw-device", "cpu", "--nnw-certificate", str(cert), "--benchmark-json", str(bench), "-k", "NCT",
        timeout=900)
    out = "\n".join(result.outlines + result.errlines)
    # every cost clause passes; a cost pass alone leaves the conformance clauses unevaluated, so the
    # certificate's grade is "incomplete" and the exit status 6 (README: Grades)
    assert result.ret == 6, out[-4000:]
    result.assert_outcomes(passed=5)
    c = json.loads(cert.read_text())
    assert c["summary"]["verdict"] == "pass" and c["summary"]["grade"] == "incomplete"
    by_test = {cl["nodeid"].split("::")[1]: cl for cl in c["clauses"]}
    inj = by_test["test_cost_injection[NCT-ResNet8]"]
    assert inj["property"] == "cost" and inj["method"] == "NCT" and inj["table"] == "23"
    assert inj["measured"]["batch_iterations_to_insert"] == 0
    assert set(by_test) >= {"test_cost_detection[NCT-ResNet8]", "test_nct_insertion_time[NCT-ResNet8-N64]",
                            "test_nct_insertion_time[NCT-ResNet8-N512]", "test_nct_detection_complexity[NCT-ResNet8]"}
    b = json.loads(bench.read_text())
    names = {x["name"]: x for x in b["benchmarks"]}
    assert names["test_cost_injection[NCT-ResNet8]"]["extra_info"]["timed_iterations_per_round"] == 2
    assert names["test_cost_injection[NCT-ResNet8]"]["stats"]["rounds"] == 1
    assert "increased_batch_iteration_time_percent" in names["test_cost_injection[NCT-ResNet8]"]["extra_info"]
    assert names["test_nct_insertion_time[NCT-ResNet8-N64]"]["stats"]["rounds"] == 2
