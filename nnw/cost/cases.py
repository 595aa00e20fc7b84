"""The cases of ``conformance/test_cost.py``, for the methods and the profile of a run.

For each active method that inserts a mark, on the profile's ResNet8 (else its first task the
method supports): an injection case (a Table 23 row) and, for a detecting method, a detection
case. For a method whose spec section has a figure of insertion time against a key parameter
(Figure 5) or a bound on the growth of its detection time (``nnw.spec.technologies``): one
insertion-time case per size of that parameter (the profile's grids plus ``figure5_extra_N``)
and one complexity case over those sizes.
"""
from __future__ import annotations

from dataclasses import dataclass

from nnw.cost.common import cost_settings

NOT_MEASURING = "cost tests ran without measuring: run them in a serial pass: pytest conformance -m cost -p no:xdist"
PREFERRED_TASK = "ResNet8"   # Table 23 / Figure 5 model of the embedded and spec profiles
CASE_KINDS = ("injection_case", "detection_case", "insertion_time_case", "complexity_case")


@dataclass(frozen=True)
class CostCase:
    method: str
    task: str
    config: tuple = ()      # ((key, value), ...)
    n: int | None = None    # Figure 5: the size of the key parameter
    ns: tuple = ()          # complexity: the sizes n
    id: str = ""
    param: str | None = None  # Figure 5: the key parameter the size is given to (spec data)


def require_measuring(benchmark) -> None:
    """Fail (never pass unmeasured) when pytest-benchmark measures nothing (xdist, --benchmark-disable)."""
    if benchmark.disabled:
        import pytest

        pytest.fail(f"{NOT_MEASURING} (pytest-benchmark is disabled here: under xdist, or --benchmark-disable)",
                    pytrace=False)


def task_for(profile, method) -> str | None:
    tasks = profile.tasks
    if PREFERRED_TASK in tasks and tasks[PREFERRED_TASK]["task"] in method.tags.tasks:
        return PREFERRED_TASK
    return next((t for t, e in tasks.items() if e["task"] in method.tags.tasks), None)


def cost_config(profile, method) -> tuple:
    """The method's first robustness configuration, preferring insertion at α = 0."""
    from nnw.cases import configs, method_grid

    cfgs = [cfg for cfg, _ in configs(method_grid(profile, method, "robustness"))]
    if not cfgs:
        return ()
    return next((cfg for cfg in cfgs if dict(cfg).get("alpha", 0) == 0), cfgs[0])


def insertion_sizes(profile, method, param: str, settings) -> list[int]:
    """Figure 5's sizes: ``figure5_extra_N`` and the values of ``param`` in the method's grids."""
    sizes = set(settings["figure5_extra_N"])
    for section in ("imperceptibility", "robustness"):
        sizes.update(profile.method_grid(method.name, section).get(param, []))
    return sorted(int(n) for n in sizes)


def cost_cases(config) -> dict[str, list[CostCase]]:
    """The cost cases of a pytest run (its ``--nnw-profile`` and ``--nnw-method``), by kind."""
    from nnw.cases import run_methods, run_profile
    from nnw.spec.technologies import detection_complexity, insertion_time_figure

    profile = run_profile(config)
    settings = cost_settings(profile.data)
    out: dict[str, list[CostCase]] = {k: [] for k in CASE_KINDS}
    for method in run_methods(config).values():
        task = task_for(profile, method)
        if task is None or method.tags.kind != "active" or method.tags.insertion == "none":
            continue
        cfg = cost_config(profile, method)
        cid = f"{method.name}-{task}"
        out["injection_case"].append(CostCase(method.name, task, cfg, id=cid))
        if method.tags.detects:
            out["detection_case"].append(CostCase(method.name, task, cfg, id=cid))
        figure = insertion_time_figure(method.name)
        if figure:
            param = figure["param"]
            ns = insertion_sizes(profile, method, param, settings)
            for n in ns:
                out["insertion_time_case"].append(CostCase(method.name, task, cfg, n=n, id=f"{cid}-{param}{n}", param=param))
            if detection_complexity(method.name):
                out["complexity_case"].append(CostCase(method.name, task, cfg, ns=tuple(ns), id=cid, param=param))
    return out
