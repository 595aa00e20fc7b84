"""Computational cost of a traceability method (NNW-TEC §7.2.7, §7.3.6, §7.4.6, Table 23, Figure 5):
the measurements. Their verdicts (the clause records and the pass/fail rules) are
:mod:`nnw.checks.cost`; the cases of ``conformance/test_cost.py`` are :mod:`nnw.cost.cases`.

MPAI-NNW V1's procedure "3) Computational cost evaluation" characterizes the *injection* by four
elements and the *detection/decoding* by two; each is measured by plain functions (no pytest;
``conformance/test_cost.py`` drives them with pytest-benchmark):

=============================================================  ==========================================
element (MPAI-NNW V1)                                          function (module)
=============================================================  ==========================================
injection: memory footprint                                    :func:`training_footprint` (+ :func:`peak_memory`), ``memory``
injection: time of one epoch normalized per batch              :func:`timed_training`, :func:`batch_iteration_time`,
                                                               :func:`compare_batch_iteration_time`, ``timing``
injection: epochs / batch iterations to insert (in training)   :func:`iterations_to_insert`, ``insertion``
injection: inference time of the marked model                  :func:`inference_time`, ``timing``
detection/decoding: memory footprint and total duration        :func:`detection_cost`, ``timing``
post-training insertion time against N (Figure 5)              :func:`insertion`, ``insertion``
detection time no worse than O(n log n) (§7.2.7)               :func:`nlogn_violations`, :func:`loglog_slope`, ``timing``
=============================================================  ==========================================

Each module's docstring says how its figures are taken. Sizes (iterations timed, rounds, check
period, ...) are :data:`SETTINGS` (``common``), overridable by a profile's ``"cost"`` section.
"""
from nnw.cost.common import SETTINGS, cost_settings, synchronize
from nnw.cost.insertion import InsertionRun, default_check_every, insertion, iterations_to_insert
from nnw.cost.memory import Footprint, PeakMemory, peak_memory, tensor_bytes, training_footprint
from nnw.cost.timing import (DetectionCost, IterationCost, StepTimer, StepTiming, batch_iteration_time,
                             compare_batch_iteration_time, detection_cost, inference_time, loglog_slope,
                             nlogn_violations, run_detection, timed_training)

__all__ = [
    "SETTINGS", "cost_settings", "synchronize",
    "StepTimer", "StepTiming", "timed_training", "batch_iteration_time", "IterationCost",
    "compare_batch_iteration_time",
    "InsertionRun", "iterations_to_insert", "default_check_every",
    "PeakMemory", "peak_memory", "tensor_bytes", "Footprint", "training_footprint",
    "inference_time", "run_detection", "DetectionCost", "detection_cost", "insertion",
    "nlogn_violations", "loglog_slope",
]
