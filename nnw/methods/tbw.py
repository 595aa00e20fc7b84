"""Trigger-Based Watermarking (TBW), NNW-TEC §7.4 (Adi et al. 2018, ref. [9]).

**TBW-Key** (§7.4.1): the trigger images and their labels — :func:`nnw.data.triggers.make_trigger_set`
(abstract uint8 images unrelated to the main data, uniformly random labels), a function of the seed.

**ρ** (§7.4.3): read as *the number of trigger images mixed into each training batch*, taken
from the trigger set in a fixed cyclic order (batch i gets triggers i·ρ … i·ρ+ρ−1 mod n). This is
the reading under which Table 17's grid ρ ∈ {1, 5, 10, 50, 100} fits the 100-image trigger set
(ρ = 100: the whole set in every batch) and "ρ fixed to 10 as in [9]" matches Adi et al., who
concatenate a few trigger samples to every batch.

**Insertion** (in training only; ``embed`` raises NotImplementedError): the training hook
returns ρ prepared triggers and their labels from ``extra_batch``; the loop concatenates them to
the main batch. The triggers are prepared (``prepare(x_uint8)``: the task's input transform) and
moved to the device once, in ``on_train_start``; batches are cut by index arithmetic on device
tensors (no host synchronisation).

**Detection**: inference on the whole trigger set (eval mode, no grad; the model's train/eval
state is restored after); share = fraction of triggers given their key label. Present iff share >
0.40 ("successfully retrieved if % is superior to 40", §7.4.4; spec README item 5: Tables 19–21's
"BER" is this share). The rule is the spec's, read from the spec's data file
(:func:`nnw.methods.base.detection_rule`): a key never sets its own threshold (a key or config
``threshold`` is refused unless it merely repeats the spec's value). p-value = P[X ≥ matches],
X ~ Bin(n, 1/C): the probability
that an unmarked model, labelling triggers independently of the key, agrees that often.
TBW is a black-box method: the Key is not tied to an architecture (a distilled student of another
architecture can still be queried); only the number of classes must agree.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from nnw.data.triggers import make_trigger_set
from nnw.hooks import TrainContext, TrainingHook
from nnw.layers import model_device
from nnw.methods.base import (
    Detection,
    Key,
    KeyMismatchError,
    Prepare,
    Tags,
    TraceabilityMethod,
    default_prepare,
    detection_rule,
    rule_says_present,
)
from nnw.methods.keys import (
    KeyConfigError,
    bound,
    model_signature,
    to_jsonable,
    validate_config,
    validate_key,
    without_spec_threshold,
)
from nnw.metrics.rates import binomial_sf

DEFAULTS: dict[str, Any] = {
    "n_triggers": 100,
    "rho": 10,
    "num_classes": 10,
    "shape": [3, 32, 32],
}

#: Batch size of the detection inference over the trigger set.
DETECT_BATCH = 256


class TBW(TraceabilityMethod):
    """Adi et al.'s trigger-set (backdoor) watermark (NNW-TEC §7.4); see the module docstring.

    Config: ``n_triggers`` (100), ``rho`` (ρ = triggers per batch, 10), ``num_classes`` (10),
    ``shape`` ([3, 32, 32]); ranges and bounds in ``nnw/schemas/key-config.schema.json``. The
    detection threshold is the spec's (share > 40 %, §7.4.4), not a config entry.
    """

    name = "TBW"
    version = "1.0"
    tags = Tags(
        kind="active",
        insertion="in-training",
        detects=True,
        decodes=False,
        fingerprints=False,
        multi_mark=False,
        integrity=True,
        tasks=frozenset({"classification"}),
    )

    # -- keys -----------------------------------------------------------------------------
    def keygen(self, model: nn.Module, *, seed: int, config: Mapping[str, Any] | None = None) -> Key:
        """The trigger set and its random labels, from ``seed``."""
        cfg = _config(config)
        triggers = make_trigger_set(
            n=cfg["n_triggers"], num_classes=cfg["num_classes"], shape=tuple(cfg["shape"]), seed=int(seed)
        )
        return Key(
            method=self.name,
            config=to_jsonable(cfg),
            tensors={
                "triggers": triggers.x.to(torch.uint8).contiguous(),
                "labels": triggers.y.to(torch.int64).contiguous(),
            },
            model_signature=model_signature(model),
        )

    def check_key(self, model: nn.Module, key: Key) -> None:
        """KeyMismatchError if the key is not a consistent TBW key (the architecture is not checked)."""
        self._check_tensors(key)

    def _check_tensors(self, key: Key) -> None:
        self._check_method(key)
        try:
            validate_key(key)
        except KeyConfigError as exc:
            raise KeyMismatchError(f"malformed TBW key: {exc}") from None
        for name in ("triggers", "labels"):
            if name not in key.tensors:
                raise KeyMismatchError(f"TBW key lacks its tensor {name!r}")
        x, y = key.tensors["triggers"], key.tensors["labels"]
        if x.dim() != 4 or y.dim() != 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise KeyMismatchError(
                f"TBW key tensors are inconsistent: triggers {tuple(x.shape)}, labels {tuple(y.shape)}"
            )
        C = int(key.config.get("num_classes", 0))
        if int(y.min()) < 0 or int(y.max()) >= C:
            raise KeyMismatchError(f"TBW key labels fall outside [0, num_classes={C})")

    # -- insertion ------------------------------------------------------------------------
    def training_hook(self, key: Key, *, prepare: Prepare | None = None) -> TBWHook:
        """ρ triggers per batch, prepared with ``prepare`` (default x/255)."""
        self._check_tensors(key)
        return TBWHook(key, prepare or default_prepare)

    # -- verification ---------------------------------------------------------------------
    def _trigger_logits(self, model: nn.Module, key: Key, prepare: Prepare | None) -> torch.Tensor:
        """The model's outputs on the trigger set (eval mode; the model's modes are restored)."""
        self.check_key(model, key)
        prepare = prepare or default_prepare
        x = key.tensors["triggers"]
        C = int(key.config["num_classes"])
        device = model_device(model)
        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            out = []
            with torch.no_grad():
                for start in range(0, x.shape[0], DETECT_BATCH):
                    logits = model(prepare(x[start : start + DETECT_BATCH]).to(device))
                    if logits.dim() != 2 or logits.shape[1] != C:
                        raise KeyMismatchError(
                            f"TBW key is for a {C}-class classifier; the model outputs shape {tuple(logits.shape)}"
                        )
                    out.append(logits.float())
        finally:
            for m, training in modes:
                m.training = training
        return torch.cat(out).cpu()

    def traceability_data(self, model: nn.Module, key: Key, *, prepare: Prepare | None = None) -> torch.Tensor:
        """§3 Algorithmic Integrity: the logits on the trigger set (what Detection thresholds after argmax).
        Compared bit for bit, so GPU convolutions run with cuDNN's deterministic algorithms."""
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, benchmark=False, deterministic=True):
            return self._trigger_logits(model, key, prepare)

    def detect(self, model: nn.Module, key: Key, *, prepare: Prepare | None = None) -> Detection:
        """Share of triggers labelled as keyed; present iff share > threshold (§7.4.4)."""
        logits = self._trigger_logits(model, key, prepare)
        y = key.tensors["labels"]
        C = int(key.config["num_classes"])
        rule = detection_rule(self.name)  # the spec's (§7.4.4), never the key's
        pred = logits.argmax(dim=1)
        n = int(y.numel())
        matches = int((pred == y).sum())
        share = matches / n
        p_value = float(binomial_sf(matches, n, 1.0 / C))
        return Detection(
            present=rule_says_present(rule, share),
            score=share,
            threshold=float(rule["value"]),
            p_value=p_value,
            details={"share": share, "matches": matches, "n": n, "num_classes": C},
        )


def _config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The keygen config: the schema's ``TBW.keygen`` (types, ranges, bounded sizes), and at most
    ``TBW.trigger_values`` trigger values in all (n_triggers x C x H x W)."""
    cfg = dict(DEFAULTS)
    if config:
        cfg.update(without_spec_threshold("TBW", config))  # a key's config given back: 0.40 is the spec's, dropped
    if isinstance(cfg.get("shape"), tuple):
        cfg["shape"] = list(cfg["shape"])
    validate_config("TBW", cfg, "keygen")
    values = cfg["n_triggers"] * cfg["shape"][0] * cfg["shape"][1] * cfg["shape"][2]
    limit = bound("TBW.trigger_values")
    if values > limit:
        raise KeyConfigError(
            f"TBW config: n_triggers x C x H x W = {cfg['n_triggers']} x {' x '.join(map(str, cfg['shape']))} "
            f"= {values} trigger values exceeds the bound {limit}"
        )
    return cfg


class TBWHook(TrainingHook):
    """Returns the next ρ triggers (cycling through the set) from ``extra_batch`` (§7.4.2)."""

    def __init__(self, key: Key, prepare: Prepare) -> None:
        self.key = key
        self.prepare = prepare
        self.rho = int(key.config["rho"])
        self._x: torch.Tensor | None = None
        self._y: torch.Tensor | None = None
        self._offsets: torch.Tensor | None = None
        self._cursor = 0

    def on_train_start(self, model: nn.Module, ctx: TrainContext) -> None:
        device = ctx.device
        self._x = self.prepare(self.key.tensors["triggers"]).to(device)
        self._y = self.key.tensors["labels"].to(device)
        self._offsets = torch.arange(self.rho, device=device)
        self._cursor = 0

    def extra_batch(self, ctx: TrainContext) -> tuple[torch.Tensor, torch.Tensor]:
        if self._x is None or self._y is None or self._offsets is None:
            raise RuntimeError("TBWHook.extra_batch called before on_train_start")
        n = self._x.shape[0]
        idx = (self._offsets + self._cursor) % n
        self._cursor = (self._cursor + self.rho) % n
        return self._x.index_select(0, idx), self._y.index_select(0, idx)


__all__ = ["TBW", "TBWHook", "DEFAULTS", "DETECT_BATCH"]
