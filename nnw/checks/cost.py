"""Computational cost verdicts (NNW-TEC §7.2.7, §7.3.6, §7.4.6, Table 23, Figure 5): the clause
records of the measurements of :mod:`nnw.cost` and their pass/fail rules.

* injection (Table 23 row + MPAI-NNW V1's four injection elements): fails only when the mark was
  never found within the budget (the full training);
* detection/decoding (total duration, memory footprint): always passes (a figure, not a bound);
* insertion time against N (Figure 5): fails only when the inserted mark is not detected;
* detection time against n (§7.2.7 "O(n log n)"): fails when a pair of sizes grows faster than
  ``slack`` x (n2 log n2)/(n1 log n1).

The clause of a record is the method's cost section in the spec data
(:func:`nnw.spec.technologies.cost_clause`), never a list of method names here.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nnw.checks.result import FAIL, PASS, ClauseResult
from nnw.cost.insertion import InsertionRun
from nnw.cost.memory import Footprint
from nnw.cost.timing import DetectionCost, IterationCost, loglog_slope, nlogn_violations
from nnw.methods.base import TraceabilityMethod
from nnw.spec import technologies
from nnw.spec.published import clause_rows

__all__ = ["CostResult", "cost_clause", "injection_clause", "detection_clause", "insertion_time_clause",
           "complexity_clause"]


@dataclass
class CostResult(ClauseResult):
    """A ClauseResult carrying the method/task/property fields the certificate requires of every
    clause (the plugin fills them from a conformance *case*; cost tests have none)."""

    method: str = ""
    task: str = ""
    property: str = "cost"
    config: dict[str, Any] = field(default_factory=dict)


def cost_clause(method_name: str) -> str:
    """The clause of ``method_name``'s cost records: its NNW-TEC section (spec data), else NNW-NNT's."""
    return technologies.cost_clause(method_name)


def _published_table23(method_name: str) -> dict[str, Any] | None:
    rows = clause_rows("23", method=method_name)  # the published figures are context only
    return rows[0] if rows else None


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "n/a"
    return f"{s * 1e3:.3g} ms" if s < 1 else f"{s:.3g} s"


def _mb(b: int | None) -> str:
    return "n/a" if b is None else f"{b / 2**20:.3g} MiB"


def injection_clause(method: TraceabilityMethod, task_name: str, config: Mapping[str, Any], *,
                     iteration: IterationCost | None, run: InsertionRun, footprint_unmarked: Footprint,
                     footprint_marked: Footprint | None, inference_unmarked: float, inference_marked: float,
                     device: str) -> CostResult:
    """The injection record (Table 23 row + MPAI-NNW's four injection elements); fails only when
    the mark was never found within the budget."""
    fp_m = footprint_marked or footprint_unmarked
    mem_increase = (fp_m.total / footprint_unmarked.total - 1.0) * 100.0
    measured: dict[str, Any] = {
        "batch_iterations_to_insert": run.iterations,
        "increased_batch_iteration_time_percent": None if iteration is None else round(iteration.increase_percent, 2),
        "batch_iteration_seconds": None if iteration is None else {
            "unmarked": iteration.baseline_seconds, "marked": iteration.marked_seconds,
            "unmarked_rounds": iteration.baseline_rounds, "marked_rounds": iteration.marked_rounds,
            "unmarked_round_means": iteration.baseline_means, "marked_round_means": iteration.marked_means,
            "increase_percent_of_means": None if iteration.mean_increase_percent is None
            else round(iteration.mean_increase_percent, 2),
            "unmarked_spread_percent": round(iteration.baseline_spread_percent, 2)},
        "check_every": run.check_every,
        "insertion_budget_iterations": run.budget,
        "insertion_training_seconds": run.seconds,
        "insertion_check_seconds": run.check_seconds,
        "insertion_steps_run": run.steps_run,
        "detection_at_insertion": None if run.detection is None else {
            "present": bool(run.detection.present), "score": float(run.detection.score),
            "threshold": float(run.detection.threshold), "ber": run.ber},
        "memory_footprint_bytes": {"unmarked": footprint_unmarked.as_dict(), "marked": fp_m.as_dict()},
        "memory_footprint_increase_percent": round(mem_increase, 3),
        "inference_seconds": {"unmarked": inference_unmarked, "marked": inference_marked},
        "inference_time_increase_percent": round((inference_marked / inference_unmarked - 1.0) * 100.0, 2),
        "device": device,
    }
    published = _published_table23(method.name)
    if published is not None:
        measured["published_table23"] = published
    title = f"Computational cost of {method.name} injection on {task_name} " \
            f"({', '.join(f'{k}={v}' for k, v in config.items())})"
    common = dict(threshold={"insertion_budget_iterations": run.budget}, table="23", method=method.name,
                  task=task_name, config=dict(config))
    if run.iterations is None:
        last = run.detection
        msg = (f"the mark was not found within the budget of {run.budget} batch iterations (the full training; "
               f"checked every {run.check_every}); last check: "
               + ("no detection possible" if last is None else
                  f"present={last.present}, score {last.score:.4g} vs threshold {last.threshold:.4g}"
                  + ("" if run.ber is None else f", BER {run.ber:.4g}")))
        return CostResult(cost_clause(method.name), title, FAIL, msg, measured, rows=[], **common)
    parts = [f"mark inserted after {run.iterations} batch iterations"
             + (f" (checked every {run.check_every})" if run.iterations and run.check_every > 1 else "")]
    if iteration is not None:
        parts.append(f"batch iteration {_fmt_s(iteration.baseline_seconds)} -> {_fmt_s(iteration.marked_seconds)} "
                     f"({iteration.increase_percent:+.1f}%; unmarked spread {iteration.baseline_spread_percent:.0f}%)")
    parts.append(f"memory {_mb(footprint_unmarked.total)} -> {_mb(fp_m.total)} ({mem_increase:+.2f}%)")
    parts.append(f"inference {_fmt_s(inference_unmarked)} -> {_fmt_s(inference_marked)}")
    if published is not None:
        parts.append(f"[Table 23 published: {published['batch_iterations_to_insert']} iterations, "
                     f"{published['increased_batch_iteration_time_percent']}%]")
    return CostResult(cost_clause(method.name), title, PASS, "; ".join(parts), measured, rows=[], **common)


def detection_clause(method: TraceabilityMethod, task_name: str, config: Mapping[str, Any], *, seconds: float,
                     seconds_min: float | None, rounds: int, cost: DetectionCost, marked: bool,
                     device: str) -> CostResult:
    """The detection/decoding record: total duration and memory footprint (always passes)."""
    measured = {"detection_seconds": seconds, "detection_seconds_min": seconds_min, "rounds": rounds,
                "cold_key": True, "decode_seconds": cost.decode_seconds,
                "memory_peak_bytes": cost.memory.bytes, "memory_source": cost.memory.source,
                "present": bool(cost.detection.present), "model_marked": marked, "device": device}
    title = f"Computational cost of {method.name} detection on {task_name}"
    msg = (f"detection {_fmt_s(seconds)} (median of {rounds}, cold key)"
           + ("" if cost.decode_seconds is None else f", decoding {_fmt_s(cost.decode_seconds)}")
           + f"; peak memory {_mb(cost.memory.bytes)} ({cost.memory.source})"
           + ("" if marked else "; on a model whose mark was never completed"))
    return CostResult(cost_clause(method.name), title, PASS, msg, measured, method=method.name, task=task_name,
                      config=dict(config))


def insertion_time_clause(method_name: str, task_name: str, n: int, total_weights: int, *, seconds: float,
                          seconds_min: float | None, rounds: int, present: bool, device: str) -> CostResult:
    """One point of Figure 5 (NCT insertion time against N); fails only if the mark is not detected."""
    measured = {"N": n, "insertion_seconds": seconds, "insertion_seconds_min": seconds_min, "rounds": rounds,
                "weights": total_weights, "share_of_weights": n / total_weights, "detected": present,
                "device": device}
    title = f"{method_name} insertion time against N (Figure 5): N={n} on {task_name}"
    if not present:
        return CostResult(cost_clause(method_name), title, FAIL, f"N={n}: the inserted mark is not detected",
                          measured, table="F5", method=method_name, task=task_name, config={"N": n})
    return CostResult(cost_clause(method_name), title, PASS,
                      f"N={n}: insertion {_fmt_s(seconds)} (median of {rounds}; key drawn + substitution)",
                      measured, table="F5", method=method_name, task=task_name, config={"N": n})


def complexity_clause(method_name: str, task_name: str, times: Mapping[int, float], *, slack: float,
                      device: str) -> CostResult:
    """§7.2.7 "time complexity O(n log n)": fails when a pair of sizes grows faster than the slack allows."""
    violations = nlogn_violations(times, slack)
    slope = loglog_slope(times)
    ns = sorted(times)
    rows = [{"n": n, "detection_seconds": times[n]} for n in ns]
    measured = {"detection_seconds": {str(n): times[n] for n in ns}, "loglog_slope": slope,
                "violations": violations, "device": device}
    title = f"{method_name} detection time against n: no worse than O(n log n) (§7.2.7) on {task_name}"
    threshold = {"max_time_ratio": f"{slack} * (n2 log n2) / (n1 log n1)"}
    pts = ", ".join(f"n={n}: {_fmt_s(times[n])}" for n in ns)
    if violations:
        v = max(violations, key=lambda d: d["time_ratio"] / d["bound"])
        return CostResult(cost_clause(method_name), title, FAIL,
                          f"detection time grows faster than n log n: n {v['n1']} -> {v['n2']} took "
                          f"{v['time_ratio']:.3g}x (bound {v['bound']:.3g}x); {pts}", measured, threshold, rows,
                          method=method_name, task=task_name)
    return CostResult(cost_clause(method_name), title, PASS,
                      f"{pts}; log-log slope {slope:.2f}; every ratio within {slack}x n log n", measured, threshold,
                      rows, method=method_name, task=task_name)