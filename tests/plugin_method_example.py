"""A minimal third-party traceability method, loaded by path in tests/test_methods.py.

It shows what an outside package implements (nnw.methods.base): a *passive* fingerprint that
reads the first ``n`` values of the first weight layer and matches them by Pearson correlation.
Also: objects that are NOT methods, to test the registry's errors.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nnw.layers import weight_layers
from nnw.methods.base import Detection, Key, KeyMismatchError, Prepare, Tags, TraceabilityMethod
from nnw.methods.keys import model_signature


class ExampleMethod(TraceabilityMethod):
    """Passive fingerprint: the first ``n`` weights of the first weight layer."""

    name = "EXAMPLE"
    version = "0.1"
    tags = Tags(
        kind="passive",
        insertion="none",
        detects=True,
        decodes=False,
        fingerprints=True,
        multi_mark=False,
        tasks=frozenset({"classification"}),
    )

    def keygen(self, model: nn.Module, *, seed: int, config: Mapping[str, Any] | None = None) -> Key:
        n = int((config or {}).get("n", 16))
        key = Key(self.name, {"n": n}, {}, model_signature(model))
        key.tensors["original"] = self.extract(model, key)
        return key

    def check_key(self, model: nn.Module, key: Key) -> None:
        self._check_method(key)
        if model_signature(model)["layers_sha"] != key.model_signature["layers_sha"]:
            raise KeyMismatchError("EXAMPLE key was made for another architecture")

    def extract(self, model: nn.Module, key: Key) -> torch.Tensor:
        first = next(iter(weight_layers(model).values()))
        return first.detach().reshape(-1)[: key.config["n"]].float().clone()

    def detect(self, model: nn.Module, key: Key, *, prepare: Prepare | None = None) -> Detection:
        self.check_key(model, key)
        a, b = key.tensors["original"], self.extract(model, key)
        r = float(torch.corrcoef(torch.stack([a, b]))[0, 1])
        return Detection(present=r > 0.9, score=r, threshold=0.9)


def make_example() -> ExampleMethod:
    """A zero-argument factory (accepted by the registry)."""
    return ExampleMethod()


example_instance = ExampleMethod()


class NotAMethod:
    """A class that does not subclass TraceabilityMethod."""


def broken_factory() -> ExampleMethod:
    """A factory that fails."""
    raise RuntimeError("factory exploded")


NOT_CALLABLE = 42
