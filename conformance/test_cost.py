"""Computational cost — NNW-TEC §7.2.7 (Figure 5), §7.3.6, §7.4.6 and Table 23; MPAI-NNW V1
procedure 3 (four elements characterize the injection, two the detection/decoding).

A serial pass of its own: ``pytest conformance -m cost``. pytest-benchmark measures nothing under
xdist or with ``--benchmark-disable``; these tests then FAIL, they never pass unmeasured. Each
test times its target with the ``benchmark`` fixture (warm-up rounds first), puts the other
figures in ``benchmark.extra_info`` and records its clause for the certificate. The measuring
code is :mod:`nnw.cost` (its docstrings say what each figure is and how it is taken), the verdicts
:mod:`nnw.checks.cost`, the cases :mod:`nnw.cost.cases`.

Cases, for the methods of the run, on the profile's ResNet8 (else its first task the method supports):

* ``test_cost_injection[<method>-ResNet8]`` — a Table 23 row: batch iterations to insert the mark
  and increased batch iteration time (%), with the memory footprint and inference time of the
  marked model (in-training methods; for a post-training one the timed target is ``embed``).
* ``test_cost_detection[<method>-ResNet8]`` — duration (cold key) and memory of the detection/decoding.
* ``test_nct_insertion_time[NCT-ResNet8-N<N>]`` — Figure 5: NCT insertion time, N in the profile's
  NCT grid plus the ``figure5_extra_N`` sizes (4096 and 16144 by default).
* ``test_nct_detection_complexity[NCT-ResNet8]`` — NCT detection time against n, no worse than n log n.

Sizes (iterations timed, rounds, check period, ...) are :data:`nnw.cost.SETTINGS`, overridable by
an optional ``"cost"`` section of the profile. The model seed and key seed are the profile's first.
"""
from __future__ import annotations

import copy
import itertools

import pytest

from nnw import cost
from nnw.checks import cost as verdicts
from nnw.cost.cases import CASE_KINDS, cost_cases, require_measuring

pytestmark = pytest.mark.cost


def pytest_generate_tests(metafunc):
    wanted = [name for name in CASE_KINDS if name in metafunc.fixturenames]
    if not wanted:
        return
    config = metafunc.config
    if not hasattr(config, "_nnw_cost_cases"):
        config._nnw_cost_cases = cost_cases(config)
    for name in wanted:
        cases = config._nnw_cost_cases[name]
        metafunc.parametrize(name, [pytest.param(c, id=c.id) for c in cases])


# -- helpers ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def settings(nnw_profile):
    return cost.cost_settings(nnw_profile.data)


@pytest.fixture(scope="module")
def insertion_runs():
    """Insertion runs shared by the injection and detection tests of a method (made once, on demand)."""
    return {}


def _insertion_run(runs, c, method, task, profile, device, settings, progress) -> cost.InsertionRun:
    if c.id not in runs:
        seed, key_seed = profile.model_seeds[0], profile.key_seeds[0]
        model = task.build_model(seed).to(device)
        key = method.keygen(model, seed=key_seed, config=dict(c.config))
        if method.tags.insertion == "in-training":
            progress(f"cost {c.id}: training with the mark until it is found (at most the full training)")
        runs[c.id] = cost.iterations_to_insert(task, method, key, model, device=device, seed=seed,
                                               check_every=settings["check_every"],
                                               max_steps=settings["max_insert_steps"])
    return runs[c.id]


def _bare_model(profile, task_name, seed):
    """The task's model, initialized like ``Task.build_model`` (no dataset needed)."""
    from nnw.models import build_model
    from nnw.tasks import seeded

    entry = profile.tasks[task_name]
    with seeded(seed):
        return build_model(entry["model"], **entry.get("model_kwargs", {}))


def _median(benchmark) -> tuple[float, float, int]:
    st = benchmark.stats.stats
    return st.median, st.min, st.rounds


# -- tests --------------------------------------------------------------------------------------
def test_cost_injection(injection_case, benchmark, settings, nnw_zoo, nnw_profile, nnw_methods, nnw_device,
                        insertion_runs, record_clause):
    require_measuring(benchmark)
    c, s = injection_case, settings
    method, task, cfg = nnw_methods[c.method], nnw_zoo.task(c.task), dict(c.config)
    seed, key_seed = nnw_profile.model_seeds[0], nnw_profile.key_seeds[0]

    def fresh():
        return task.build_model(seed).to(nnw_device)

    def hook_for(model):  # a fresh key per run: NCT keys are single-use
        return method.training_hook(method.keygen(model, seed=key_seed, config=cfg), prepare=task.prepare)

    iteration = None
    if method.tags.insertion == "in-training":
        unmarked, marked = [], []

        def setup():  # the unmarked arm runs here (untimed by pytest-benchmark), alternating with the marked arm
            unmarked.append(cost.timed_training(task, fresh(), (), device=nnw_device, steps=s["steps"],
                                                warmup=s["warmup_steps"], seed=seed))
            model = fresh()
            return (model, hook_for(model)), {}

        def target(model, hook):  # the timed target: warm-up + steps batch iterations with the method's hook
            marked.append(cost.timed_training(task, model, [hook], device=nnw_device, steps=s["steps"],
                                              warmup=s["warmup_steps"], seed=seed))

        benchmark.pedantic(target, setup=setup, rounds=s["rounds"], warmup_rounds=s["warmup_rounds"])
        w = s["warmup_rounds"]
        iteration = cost.IterationCost.from_timings(unmarked[w:], marked[w:])
        benchmark.extra_info.update(timed_iterations_per_round=s["steps"],
                                    warmup_iterations_per_round=s["warmup_steps"])
    else:  # post-training insertion: the timed target is the insertion (key drawn + embed)
        seeds = itertools.count(key_seed)
        benchmark.pedantic(lambda model, sd: cost.insertion(method, model, seed=sd, config=cfg),
                           setup=lambda: ((fresh(), next(seeds)), {}), rounds=s["rounds"],
                           warmup_rounds=s["warmup_rounds"])

    run = _insertion_run(insertion_runs, c, method, task, nnw_profile, nnw_device, s, nnw_zoo.progress)
    fp_unmarked = cost.training_footprint(task, fresh(), None, device=nnw_device, seed=seed)
    if method.tags.insertion == "in-training":
        model = fresh()
        fp_marked = cost.training_footprint(task, model, hook_for(model), device=nnw_device, seed=seed)
    else:
        fp_marked = cost.training_footprint(task, copy.deepcopy(run.model), None, device=nnw_device, seed=seed)
    x = task.prepare(task.test.x[:task.recipe.batch_size])
    inf_unmarked = cost.inference_time(fresh(), x, rounds=s["inference_rounds"])
    inf_marked = cost.inference_time(run.model, x, rounds=s["inference_rounds"])
    result = verdicts.injection_clause(method, c.task, cfg, iteration=iteration, run=run, footprint_unmarked=fp_unmarked,
                                   footprint_marked=fp_marked, inference_unmarked=inf_unmarked,
                                   inference_marked=inf_marked, device=str(nnw_device))
    benchmark.extra_info.update(result.measured)
    record_clause(result)


def test_cost_detection(detection_case, benchmark, settings, nnw_zoo, nnw_profile, nnw_methods, nnw_device,
                        insertion_runs, record_clause):
    require_measuring(benchmark)
    c, s = detection_case, settings
    method, task = nnw_methods[c.method], nnw_zoo.task(c.task)
    run = _insertion_run(insertion_runs, c, method, task, nnw_profile, nnw_device, s, nnw_zoo.progress)
    model, key = run.model, run.key

    def setup():  # a cold key, as just loaded from its file: no runtime cache
        key.cache.clear()
        return (method, model, key, task.prepare), {}

    benchmark.pedantic(cost.run_detection, setup=setup, rounds=s["detection_rounds"],
                       warmup_rounds=max(1, s["warmup_rounds"]))
    seconds, seconds_min, rounds = _median(benchmark)
    extra = cost.detection_cost(method, model, key, task.prepare, rounds=1, warmup=0)  # memory and decoding
    result = verdicts.detection_clause(method, c.task, dict(c.config), seconds=seconds, seconds_min=seconds_min,
                                   rounds=rounds, cost=extra, marked=run.inserted, device=str(nnw_device))
    benchmark.extra_info.update(result.measured)
    record_clause(result)


def test_nct_insertion_time(insertion_time_case, benchmark, settings, nnw_profile, nnw_methods, nnw_device,
                            record_clause, pytestconfig):
    """Figure 5: execution time of the NCT insertion (positions drawn + substitution) against N."""
    require_measuring(benchmark)
    from nnw.layers import weight_layers

    c, s = insertion_time_case, settings
    method = nnw_methods[c.method]
    model = _bare_model(nnw_profile, c.task, nnw_profile.model_seeds[0]).to(nnw_device)
    total = sum(p.numel() for p in weight_layers(model).values())
    if c.n > total:
        pytest.skip(f"N={c.n} exceeds the {total} weights of {c.task}")
    seeds = itertools.count(1)

    def setup():  # a fresh single-use key per round (keygen is timed: it draws the positions)
        return (method, model), {"seed": next(seeds), "config": {**dict(c.config), c.param: c.n}}

    _, key = benchmark.pedantic(cost.insertion, setup=setup, rounds=s["insertion_rounds"],
                                warmup_rounds=max(1, s["warmup_rounds"]))
    seconds, seconds_min, rounds = _median(benchmark)
    present = bool(method.detect(model, key).present)
    result = verdicts.insertion_time_clause(method.name, c.task, c.n, total, seconds=seconds, seconds_min=seconds_min,
                                        rounds=rounds, present=present, device=str(nnw_device))
    benchmark.extra_info.update(result.measured)
    record_clause(result)
    _attach_figure5(pytestconfig, method.name, c.task, c.n, seconds)


_FIGURE5: dict[str, dict[int, float]] = {}


def _attach_figure5(config, method: str, curve: str, n: int, seconds: float) -> None:
    """Figure 5 replica (insertion time against N), growing with each N measured in this run, as an
    Allure attachment of the test (the last N's test carries the complete curve)."""
    points = _FIGURE5.setdefault(curve, {})
    points[n] = seconds
    if not config.getoption("--alluredir", default=None):
        return
    import allure

    from nnw.plots import insertion_time_plot

    ns = sorted(points)
    allure.attach(insertion_time_plot(ns, [points[k] for k in ns], method=method),
                  name=f"Figure 5: {method} insertion time against N",
                  attachment_type=allure.attachment_type.PNG)


def test_nct_detection_complexity(complexity_case, benchmark, settings, nnw_profile, nnw_methods, nnw_device,
                                  record_clause):
    """§7.2.7: NCT detection "has a time complexity of O(n log n)": time(n2)/time(n1) within
    ``complexity_slack`` x (n2 log n2)/(n1 log n1) for every pair of sizes (cold key each call)."""
    require_measuring(benchmark)
    from nnw.layers import weight_layers

    c, s = complexity_case, settings
    method = nnw_methods[c.method]
    base = _bare_model(nnw_profile, c.task, nnw_profile.model_seeds[0]).to(nnw_device)
    total = sum(p.numel() for p in weight_layers(base).values())
    ns = [n for n in c.ns if n <= total]
    if len(ns) < 2:
        pytest.skip(f"fewer than two sizes n fit the {total} weights of {c.task}")
    marks = {}
    for n in ns:
        model = copy.deepcopy(base)
        _, key = cost.insertion(method, model, seed=n, config={**dict(c.config), c.param: n})
        marks[n] = (model, key)
    times = {}
    for n in ns[:-1]:
        times[n] = cost.detection_cost(method, *marks[n], rounds=s["insertion_rounds"], warmup=1).seconds
    model, key = marks[ns[-1]]

    def setup():
        key.cache.clear()
        return (method, model, key), {}

    benchmark.pedantic(cost.run_detection, setup=setup, rounds=s["insertion_rounds"],
                       warmup_rounds=max(1, s["warmup_rounds"]))
    times[ns[-1]], _, _ = _median(benchmark)
    result = verdicts.complexity_clause(method.name, c.task, times, slack=s["complexity_slack"], device=str(nnw_device))
    benchmark.extra_info.update(n_max=ns[-1], **result.measured)
    record_clause(result)
