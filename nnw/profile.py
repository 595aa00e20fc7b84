"""Profiles: the sizes, seeds, grids and thresholds a conformance run uses (``--nnw-profile``).

``embedded`` (default) runs on 2 CPU cores in minutes; ``spec`` uses the models, datasets and
grids of NNW-TEC V1.0. Both are data files in ``nnw/profiles/``; a path to a JSON file with the
same structure is accepted too. The same tests run under both; only sizes change.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

BUILTIN = ("embedded", "spec")
DECISION_DEFAULTS: dict[str, Any] = {
    "family_alpha": 0.01,            # chance that a calibrated method fails any clause of one property
    "confidence": 0.95,              # of every interval reported
    "power_target": 0.9,             # a pass needs this power against the alternative below
    "nominal_false_alarm_rate": 0.05,
    "false_alarm_power_at": 0.10,    # alternative: a detector at twice the nominal rate
    "null_keys": 200,                # Keys of other Actors read on each never-marked model
    "max_miss_rate": 0.0,            # §8: the mark is found wherever the Modified model is useful
    "miss_rate_power_at": 0.5,       # alternative: a method that misses half the useful marked models
    # relative loss of the task measure, per Table 1 measure: a classifier's is its error, and 1.0
    # means "fewer than twice the errors" (Table 22: 0–7 % published, 192 % for NCT ResNet8 at
    # N = 16144, α = 90); the embedded design cannot resolve less on VGG16 (README: How verdicts
    # are decided)
    "noninferiority_margin": {"error": 1.0, "default": 0.10},
}
#: the suite's policies: a profile may change sizes (seeds, grids, null_keys) but not these; a
#: profile that does gets no certifying grade (:func:`Profile.policy_changes`)
POLICY_DEFAULTS: dict[str, Any] = {
    **{k: v for k, v in DECISION_DEFAULTS.items() if k != "null_keys"},
    # beyond it a Modified model is no longer useful (not assessable), per measure: a classifier
    # while its error rose by at most 5 points (absolute: the Watermark-Robustness-Toolbox's rule),
    # the other measures while their eq. (2) drop is at most 10 %
    "useful_error_tolerance": {"error": 0.05, "default": 0.10},
}


def for_measure(policy: Any, measure: str) -> float:
    """A policy given as one number or per Table 1 measure (``{"error": 1.0, "default": 0.1}``)."""
    if isinstance(policy, dict):
        return float(policy.get(measure, policy["default"]))
    return float(policy)
_REQUIRED = ("name", "model_seeds", "key_seeds", "tasks", "methods", "modifications", "thresholds")


@dataclass(frozen=True)
class Profile:
    name: str
    data: dict[str, Any]
    source: str

    @property
    def tasks(self) -> dict[str, Any]:
        return self.data["tasks"]

    @property
    def model_seeds(self) -> list[int]:
        return list(self.data["model_seeds"])

    @property
    def key_seeds(self) -> list[int]:
        return list(self.data["key_seeds"])

    def model_seeds_of(self, task: str) -> list[int]:
        """M for ``task``: its own ``population.model_seeds`` when the profile gives one, else the profile's."""
        return list(self.tasks.get(task, {}).get("population", {}).get("model_seeds", self.data["model_seeds"]))

    def key_seeds_of(self, task: str) -> list[int]:
        """D for ``task``: its own ``population.key_seeds`` when the profile gives one, else the profile's."""
        return list(self.tasks.get(task, {}).get("population", {}).get("key_seeds", self.data["key_seeds"]))

    @property
    def thresholds(self) -> dict[str, float]:
        return self.data["thresholds"]

    @property
    def classification_tasks(self) -> list[str]:
        return list(self.data.get("classification_tasks", []))

    @property
    def other_tasks(self) -> list[str]:
        return list(self.data.get("other_tasks", []))

    @property
    def decisions(self) -> dict[str, Any]:
        """The suite's decision policies (:mod:`nnw.checks.decision`): levels, margins, power targets,
        the number of null Keys. Defaults apply to fields a profile leaves out."""
        return {**DECISION_DEFAULTS, **self.data.get("decisions", {})}

    def policy_changes(self) -> list[str]:
        """The suite's policies (``POLICY_DEFAULTS``) this profile sets to other values: a certificate
        from such a profile cannot be "conformant" (its rules are not the suite's)."""
        mine = {**self.decisions, **self.thresholds}
        return [f"{k} = {json.dumps(mine[k])} (suite: {json.dumps(v)})"
                for k, v in POLICY_DEFAULTS.items() if k in mine and mine[k] != v]

    def method_grid(self, method: str, section: str) -> dict[str, list]:
        return dict(self.data["methods"].get(method, {}).get(section, {}))

    def modification_grid(self) -> dict[str, dict[str, list]]:
        return self.data["modifications"]


@lru_cache(maxsize=None)
def load_profile(name_or_path: str = "embedded") -> Profile:
    """Load a built-in profile by name or a JSON file by path; clear error when unknown or invalid."""
    if name_or_path in BUILTIN:
        text = resources.files("nnw.profiles").joinpath(f"{name_or_path}.json").read_text()
        source = f"nnw/profiles/{name_or_path}.json"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ValueError(f"unknown profile {name_or_path!r}: expected one of {BUILTIN} or a path to a JSON profile")
        text, source = path.read_text(), str(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"profile {source} is not valid JSON: {e}") from None
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ValueError(f"profile {source} lacks the field(s) {missing}")
    return Profile(name=data["name"], data=data, source=source)
