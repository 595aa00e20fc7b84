"""WeakSmallest: a deliberately WEAK watermark — the robustness clause must FAIL under pruning.

What it is for: a negative control of the suite's robustness clause (NNW-TEC §8: "the mark can
be extracted before the performance of the Modified models drops"). The mark lives in the N
smallest-magnitude weights of the model: they are overwritten with tiny key-derived values
u_i·δ (u_i uniform in [-1, 1], δ = the N-th smallest |w|, so the marked weights stay the smallest).
That is perfectly imperceptible and its detector is honest (Spearman rho between u and the
weights read now, one-sided 5%), so imperceptibility and false alarms pass — but magnitude
pruning zeroes exactly these weights first. After ``pruning(P=50)`` every marked weight is 0,
the detector sees a constant (rho = 0, p = 1) and misses the mark while the pruned model is still
useful: a conformant suite must fail the robustness clause. Gaussian noise and quantization erase
it too.

Config: ``N`` (default 256), ``alpha`` (0.05).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nnw.methods.base import TASKS, Detection, Key, KeyMismatchError, Prepare, Tags, TraceabilityMethod
from nnw.metrics import correlation_detection

from nnw_example_methods import _weights as W

DEFAULTS: dict[str, Any] = {"N": 256, "alpha": 0.05}
#: Entries keygen adds to a Key's config; accepted (and ignored) when a config is copied from a Key.
_DERIVED = frozenset({"seed", "delta"})


class WeakSmallest(TraceabilityMethod):
    """Weak post-training watermark in the N smallest-magnitude weights (erased by magnitude pruning).

    Expected verdict: fail (robustness against magnitude pruning, noise, quantization).
    """

    name = "WeakSmallest"
    version = "0.1"
    tags = Tags(kind="active", insertion="post-training", detects=True, decodes=False,
                fingerprints=False, multi_mark=False, tasks=TASKS)
    default_config: dict[str, Any] = dict(DEFAULTS)

    def keygen(self, model: nn.Module, *, seed: int, config: Mapping[str, Any] | None = None) -> Key:
        cfg = dict(DEFAULTS)
        unknown = sorted(set(config or {}) - set(DEFAULTS) - _DERIVED)
        if unknown:
            raise ValueError(f"unknown {self.name} config key(s) {unknown}; expected {sorted(DEFAULTS)}")
        cfg.update({k: v for k, v in (config or {}).items() if k in DEFAULTS})
        flat = W.flat_weights(model)
        n = min(int(cfg["N"]), flat.numel())
        if n < 8:
            raise ValueError(f"{self.name}: N must be >= 8 and the model must have that many weights")
        mags = flat.abs()
        indices = torch.sort(torch.topk(mags, n, largest=False, sorted=False).indices).values.to(torch.int64)
        delta = max(float(mags[indices].max()), 1e-6 * float(mags.mean()), 1e-12)
        g = W.generator(self.name, "pattern", seed)
        pattern = (torch.rand(n, generator=g) * 2 - 1).to(torch.float32)
        return Key(method=self.name, config={**cfg, "N": n, "seed": int(seed), "delta": delta},
                   tensors={"indices": indices[torch.randperm(n, generator=g)], "pattern": pattern},
                   model_signature=W.signature(model))

    def check_key(self, model: nn.Module, key: Key) -> None:
        W.check_signature(self.name, model, key)
        for name in ("indices", "pattern"):
            if name not in key.tensors:
                raise KeyMismatchError(f"{self.name} key lacks tensor {name!r}")

    def embed(self, model: nn.Module, key: Key) -> nn.Module:
        self.check_key(model, key)
        marked = W.copy_model(model)
        W.write(marked, key.tensors["indices"], key.tensors["pattern"] * float(key.config["delta"]))
        return marked

    def detect(self, model: nn.Module, key: Key, *, prepare: Prepare | None = None) -> Detection:
        self.check_key(model, key)
        now = W.read(model, key.tensors["indices"]).to(torch.float64)
        c = correlation_detection(key.tensors["pattern"].to(torch.float64), now,
                                  alpha=float(key.config["alpha"]), alternative="greater")
        return Detection(present=c.present, score=c.rho, threshold=c.critical_value, p_value=c.p_value,
                         details={"pearson": c.pearson, "n": c.n})
