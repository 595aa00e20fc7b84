"""SignSpread: an honest post-training watermark that is expected to PASS the conformance suite.

What it is for: the example a submitter can copy. It shows a complete, conformant
:class:`~nnw.methods.base.TraceabilityMethod` written outside the suite's repository, using only
the public interface (:mod:`nnw.methods.base`, :mod:`nnw.metrics`, :mod:`nnw.layers`).

**Insertion** (post-training, ``embed``). The Key holds N positions drawn (seeded) among the
largest-magnitude weights — the top ``pool`` fraction by |w| over all weight layers of
:func:`nnw.layers.weight_layers` — and a key-derived sign pattern s_i = ±1. Each selected weight is
multiplied by (1 + ε·s_i). Signs are kept, magnitudes move by ε at most, so the change is small
next to the weight itself (imperceptible), and because the weights are among the largest,
magnitude pruning does not touch them and noise/quantization errors are small relative to ε·|w|.

**Original Traceability Data** (as NNW-TEC §7.2.3 lets NCT keep): the values at the N positions
right before insertion, stored in ``key.tensors["original"]``. ``embed`` refreshes it in place
from the model it marks (save the key afterwards).

**Detection** (non-blind, one-sided, calibrated at ``alpha`` = 5%): r_i = w_i / o_i − 1 is
each weight's relative change since insertion; under "no mark" r is independent of the secret
signs s, so Spearman's rho(s, r) is ≈ 0 and its one-sided p-value is uniform. With the mark,
r_i ≈ ε·s_i (+ whatever a Modification added), and rho is close to 1.
``present`` iff p < alpha (:func:`nnw.metrics.correlation_detection`). A model equal to the
original at every position (e.g. the unmarked model the key was drawn from) gives r = 0, a
constant: rho = 0, p = 1, not present.

Config: ``N`` (default 256), ``epsilon`` (default 0.1), ``pool`` (default 0.1), ``alpha`` (0.05).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nnw.methods.base import TASKS, Detection, Key, KeyMismatchError, Prepare, Tags, TraceabilityMethod
from nnw.metrics import correlation_detection

from nnw_example_methods import _weights as W

DEFAULTS: dict[str, Any] = {"N": 256, "epsilon": 0.1, "pool": 0.1, "alpha": 0.05}


def _config(name: str, config: Mapping[str, Any] | None) -> dict[str, Any]:
    cfg = dict(DEFAULTS)
    if config:
        unknown = sorted(set(config) - set(DEFAULTS) - {"seed"})
        if unknown:
            raise ValueError(f"unknown {name} config key(s) {unknown}; expected {sorted(DEFAULTS)}")
        cfg.update({k: v for k, v in config.items() if k in DEFAULTS})
    if isinstance(cfg["N"], bool) or not isinstance(cfg["N"], int) or cfg["N"] < 8:
        raise ValueError(f"{name} N must be an int >= 8, got {cfg['N']!r}")
    if not 0.0 < float(cfg["epsilon"]) < 1.0:
        raise ValueError(f"{name} epsilon must lie in (0, 1) (signs must be kept), got {cfg['epsilon']!r}")
    if not 0.0 < float(cfg["pool"]) <= 1.0:
        raise ValueError(f"{name} pool must lie in (0, 1], got {cfg['pool']!r}")
    if not 0.0 < float(cfg["alpha"]) < 1.0:
        raise ValueError(f"{name} alpha must lie in (0, 1), got {cfg['alpha']!r}")
    return cfg


class SignSpread(TraceabilityMethod):
    """Honest post-training watermark: ±ε relative nudges of N large weights, Spearman-detected.

    Expected verdict: pass (imperceptibility, robustness wherever the Modified model stays
    useful, false alarms at the nominal 5%). See the module docstring for the algorithm.
    """

    name = "SignSpread"
    version = "0.1"
    tags = Tags(kind="active", insertion="post-training", detects=True, decodes=False,
                fingerprints=False, multi_mark=False, tasks=TASKS, integrity=True)
    #: The configuration the suite uses when its profile has no grid for this method.
    default_config: dict[str, Any] = dict(DEFAULTS)

    # -- keys ---------------------------------------------------------------------------------
    def keygen(self, model: nn.Module, *, seed: int, config: Mapping[str, Any] | None = None) -> Key:
        cfg = _config(self.name, config)
        flat = W.flat_weights(model)
        total = flat.numel()
        pool = max(1, min(total, int(round(float(cfg["pool"]) * total))))
        n = min(int(cfg["N"]), pool)
        if n < 8:
            raise ValueError(f"{self.name}: the model has too few weights ({total}) for a mark")
        # sorted positions: topk's output order is an implementation detail, the Key must not be
        candidates = torch.sort(torch.topk(flat.abs(), pool, sorted=False).indices).values
        candidates = candidates[flat[candidates] != 0]
        g = W.generator(self.name, "positions", seed)
        indices = candidates[torch.randperm(candidates.numel(), generator=g)[:n]].to(torch.int64)
        gs = W.generator(self.name, "signs", seed)
        signs = (torch.randint(0, 2, (indices.numel(),), generator=gs) * 2 - 1).to(torch.int8)
        config_out = {**cfg, "N": int(indices.numel()), "seed": int(seed)}
        return Key(method=self.name, config=config_out,
                   tensors={"indices": indices, "signs": signs, "original": flat[indices].clone()},
                   model_signature=W.signature(model))

    def check_key(self, model: nn.Module, key: Key) -> None:
        W.check_signature(self.name, model, key)
        for name in ("indices", "signs", "original"):
            if name not in key.tensors:
                raise KeyMismatchError(f"{self.name} key lacks tensor {name!r}")
        idx = key.tensors["indices"]
        total = int(key.model_signature["n_weight_params"])
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= total):
            raise KeyMismatchError(f"{self.name} key holds positions outside the model's {total} weights")

    # -- insertion ------------------------------------------------------------------------------
    def embed(self, model: nn.Module, key: Key) -> nn.Module:
        self.check_key(model, key)
        marked = W.copy_model(model)
        idx = key.tensors["indices"]
        original = W.read(model, idx)
        key.tensors["original"] = original.clone()  # Original Traceability Data: values before insertion
        s = key.tensors["signs"].to(torch.float32)
        W.write(marked, idx, original * (1.0 + float(key.config["epsilon"]) * s))
        return marked

    # -- verification ---------------------------------------------------------------------------
    def traceability_data(self, model: nn.Module, key: Key, *, prepare: Prepare | None = None) -> torch.Tensor:
        """§3 Algorithmic Integrity (tag ``integrity``): the marked weights at the key's positions, then
        each weight layer's L1 norm. The suite judges the model intact iff these equal, bit for bit,
        those read at marking. The marked positions alone would not do: they are among the largest
        weights, so pruning the smallest ones would leave them untouched (tests/test_examples.py keeps
        that variant as a negative example)."""
        self.check_key(model, key)
        marked = W.read(model, key.tensors["indices"]).to(torch.float64)
        with torch.no_grad():
            norms = torch.stack([p.detach().to("cpu", torch.float64).abs().sum() for p in W.weight_layers(model).values()])
        return torch.cat([marked, norms])

    def detect(self, model: nn.Module, key: Key, *, prepare: Prepare | None = None) -> Detection:
        self.check_key(model, key)
        idx = key.tensors["indices"]
        original = key.tensors["original"].to(torch.float64)
        now = W.read(model, idx).to(torch.float64)
        # w = o·(1 + ε·s)  ⇒  w/o − 1 = ε·s (o ≠ 0: the positions are among the largest |w|)
        safe = torch.where(original == 0, torch.full_like(original, 1e-30), original)
        rel = now / safe - 1.0
        s = key.tensors["signs"].to(torch.float64)
        c = correlation_detection(s, rel, alpha=float(key.config["alpha"]), alternative="greater")
        return Detection(present=c.present, score=c.rho, threshold=c.critical_value, p_value=c.p_value,
                         details={"pearson": c.pearson, "n": c.n, "statistic": "Spearman rho(signs, relative change)"})
