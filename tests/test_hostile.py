"""Hostile submitters (the certificate issue): each method below tries to talk the suite into a
passing certificate; none gets "conformant", and the certificate names why. Certified through
nnw.checks.run.check_method on the synthetic population (tests/synthetic.py)."""
from __future__ import annotations

import inspect
import math

import pytest
from synthetic import SyntheticDetector, SyntheticZoo

from nnw.checks.run import check_method
from nnw.methods.base import Detection
from nnw.profile import load_profile

TINY = load_profile(str(__import__("pathlib").Path(__file__).parent.parent / "fixtures" / "profiles" / "tiny.json"))


class StackSniffer(SyntheticDetector):
    """Inserts nothing; answers "absent" only when it finds the false-alarm check in its call stack."""

    def detect(self, model, key, *, prepare=None):
        names = " ".join(f.function for f in inspect.stack())
        return Detection(present="false_alarm" not in names and "negative" not in names, score=1.0, threshold=0.5)


class Destroyer(SyntheticDetector):
    """Its detect() destroys the model it is given (and says "present")."""

    def detect(self, model, key, *, prepare=None):
        model["marks"] = []
        return Detection(present=True, score=1.0, threshold=0.5)


class NaNScores(SyntheticDetector):
    def detect(self, model, key, *, prepare=None):
        det = super().detect(model, key)
        return Detection(present=det.present, score=math.nan, threshold=0.5)


class NoDetector(SyntheticDetector):
    """An active method that declares detects=False (hoping to skip robustness and false alarms)."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.tags = type(self.tags)(**{**vars(SyntheticDetector.tags), "detects": False})


class PassiveClaimer(SyntheticDetector):
    """Inserts a mark (it has ``embed``) but declares itself passive, hoping to skip the active
    clauses; its detector says "present" on every model."""

    tags = type(SyntheticDetector.tags)(**{**vars(SyntheticDetector.tags), "kind": "passive", "insertion": "none"})

    def embed(self, model, key):
        return model

    def detect(self, model, key, *, prepare=None):
        return Detection(present=True, score=1.0, threshold=0.5)


def _select(case):
    return case.task == "ResNet8" and case.property in ("robustness", "false_alarms") and \
        case.modification in (None, "noise(S=0.01)")


@pytest.mark.parametrize("method,why", [
    (StackSniffer(0.05), "false alarms"),
    (Destroyer(0.05), "changed the model it was given"),
    (NaNScores(0.05), "non-finite score"),
    (NoDetector(0.05), "declares neither detect nor decode"),
    (PassiveClaimer(0.05), "false alarms"),
])
def test_a_hostile_method_is_not_conformant(method, why):
    cert = check_method(method, TINY, zoo=SyntheticZoo(TINY), select=_select)
    assert cert["summary"]["grade"] == "not conformant"
    failed = [c for c in cert["clauses"] if c["verdict"] == "fail"]
    assert failed and any(why in c["message"] for c in failed), [c["message"] for c in failed]


def test_an_honest_synthetic_method_is_not_failed():
    cert = check_method(SyntheticDetector(0.05), TINY, zoo=SyntheticZoo(TINY), select=_select)
    assert {c["verdict"] for c in cert["clauses"]} == {"pass"}
    assert cert["summary"]["grade"] == "incomplete"  # a selection: the rest of the registry is not assessed


def test_a_profile_that_changes_the_suites_policies_gets_no_certifying_grade():
    from dataclasses import replace

    loose = replace(TINY, data={**TINY.data, "decisions": {**TINY.data["decisions"], "nominal_false_alarm_rate": 0.5}})
    cert = check_method(SyntheticDetector(0.05), loose, zoo=SyntheticZoo(loose), select=_select)
    assert cert["summary"]["grade"] == "incomplete"
    assert any("nominal_false_alarm_rate" in r for r in cert["summary"]["grade_reasons"])
