"""A population of known truth for the decision tests and the golden certificate: a detector of
known false-alarm and missed-detection rates on a zoo of dict "models" (no training, same numbers
on every machine)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch

from nnw.methods.base import Detection


class SyntheticDetector:
    """Detects its own marks (missing them with probability ``miss_rate``); on anything else says
    "present" with probability ``rate`` (independently per model and Key, from ``trial``)."""

    name, version = "Synthetic", "1"
    tags = SimpleNamespace(kind="active", insertion="post-training", detects=True, decodes=False,
                           fingerprints=False, multi_mark=False, tasks=frozenset({"classification"}),
                           integrity=False)
    default_config = {}

    def __init__(self, rate: float, trial: int = 0, miss_rate: float = 0.0):
        self.rate, self.trial, self.miss_rate = rate, trial, miss_rate

    def keygen(self, model, *, seed, config):
        return SimpleNamespace(id=seed)

    def detect(self, model, key, *, prepare=None):
        u = np.random.default_rng([self.trial, int(key.id), int(model["id"])]).random()
        present = (u >= self.miss_rate) if key.id in model["marks"] else (u < self.rate)
        return Detection(present=bool(present), score=float(u), threshold=0.5)


class SyntheticZoo:
    """Marked models keep 0.8 top-1 (``drop`` lowers every Modified one); unmarked seeds 0.8."""

    def __init__(self, profile, drop: float = 0.0):
        self.profile, self.drop = profile, drop
        self.device, self.progress = torch.device("cpu"), (lambda msg: None)

    def task(self, name):
        return SimpleNamespace(performance_keys=("top1",), prepare=None)

    def unmarked(self, task, seed):
        return {"id": seed, "marks": []}, {"performance": {"top1": 0.8}}

    def marked(self, task, method, config, seed, key_seed):
        return SimpleNamespace(model={"id": 10_000 + key_seed + 97 * seed, "marks": [key_seed]},
                               key=SimpleNamespace(id=key_seed), record={"performance": {"top1": 0.8}})

    def modified(self, task, model, modification, *, seed, identity, method, key):
        return model

    def overwritten(self, task, model, modification, *, seed, identity, method, key):
        return [(model, key)]

    def evaluate(self, task, model, identity):
        return {"top1": 0.8 * (1 - self.drop)}
