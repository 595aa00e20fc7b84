"""Regularization Term Watermarking (RTW), NNW-TEC §7.3 (Uchida et al. 2017, ref. [8]).

**RTW-Key** (§7.3.1): the layer l, the secret matrix X ∈ R^{M×T} and the payload b ∈ {0,1}^T.

* ``W_l`` ∈ R^M is the weight of layer l averaged over its first dimension (spec README item 7):
  a conv weight (out, in, k, k) gives M = in·k·k; a linear weight (out, in) gives M = in.
* X has i.i.d. entries from N(0, 1) (``key_type="normal"``, the default, as in Uchida), {0, 1}
  (``"binary01"``) or {-1, +1} (``"binary_pm1"``) (§7.3.2).
* b is :func:`nnw.payload.encode_payload` (actor, T) — an Actor identifier with a CRC — whenever T
  is a valid payload length (a multiple of 8, >= 24; e.g. 32 or 64), otherwise T random bits from
  the seed (``config.payload`` records which: "actor" or "random").

**Default layer**: drawn with the seed among the conv layers (4-D weights) with M >= T. A
projection of M values cannot in general realise T > M arbitrary signs (T half-spaces in R^M), so
such layers are not eligible by default (an explicit ``layer`` is accepted, with that caveat).

**Insertion** (in training only; ``embed`` raises NotImplementedError): the Regularization Term
λ·BCE(σ(W_l X), b) summed over the T bits (spec README item 6: Eq. (2) without its minus sign) is
added to the task loss by the training hook: ``F.binary_cross_entropy_with_logits(W_l @ X, b,
reduction="sum") * λ``. λ = 0.01 by default (§7.3.3).

**Decoding**: bits = 1[W_l X > 0] (= round(σ(W_l X))), BER against b, then
:func:`nnw.payload.decode_payload` for the Actor. **Detection**: present iff BER = 0 (the
criterion of Tables 12–16, read from the spec's data file: :func:`nnw.methods.base.detection_rule`);
score = 1 − BER against threshold 1.0; p-value = P[≥ matching bits] for T fair coins
(``binomial_sf(matches, T, 1/2)``), the chance of that agreement on an unmarked model.

**Config** ranges and bounds (T ≤ 4096, λ in (0, 10⁶], ...): ``nnw/schemas/key-config.schema.json``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from nnw.metrics.rates import binomial_sf
from torch import nn

from nnw.hooks import TrainContext, TrainingHook
from nnw.layers import weight_layers
from nnw.metrics.detection import bit_error_rate, symbol_error_rate
from nnw.methods.base import (
    TASKS,
    Decoding,
    Detection,
    Key,
    KeyMismatchError,
    Prepare,
    Tags,
    TraceabilityMethod,
    detection_rule,
    rule_says_present,
)
from nnw.methods.keys import KeyConfigError, model_signature, to_jsonable, validate_config, validate_key
from nnw.payload import decode_payload, encode_payload, to_symbols

DEFAULTS: dict[str, Any] = {
    "layer": None,
    "T": 64,
    "lam": 0.01,
    "key_type": "normal",
    "actor": 1,
}
KEY_TYPES = ("normal", "binary01", "binary_pm1")


def flattened_mean(weight: torch.Tensor) -> torch.Tensor:
    """W_l: the weight averaged over its first dimension, flattened (length M) (spec README item 7)."""
    return weight.mean(dim=0).reshape(-1)


def _is_payload_length(t: int) -> bool:
    return t >= 24 and t % 8 == 0


class RTW(TraceabilityMethod):
    """Uchida's Regularization Term Watermarking (NNW-TEC §7.3); see the module docstring.

    Config: ``layer`` (qualified weight name; default drawn with the seed), ``T`` (payload bits,
    64), ``lam`` (λ, 0.01), ``key_type`` ("normal" | "binary01" | "binary_pm1"), ``actor`` (1).
    """

    name = "RTW"
    version = "1.0"
    tags = Tags(
        kind="active",
        insertion="in-training",
        detects=True,
        decodes=True,
        fingerprints=False,
        integrity=True,
        multi_mark=False,
        tasks=TASKS,
    )

    # -- keys -----------------------------------------------------------------------------
    def keygen(self, model: nn.Module, *, seed: int, config: Mapping[str, Any] | None = None) -> Key:
        """Choose the layer, draw X (and random b if not an Actor payload) from ``seed``."""
        cfg = _config(config)
        layers = weight_layers(model)
        T = cfg["T"]
        g = torch.Generator().manual_seed(int(seed))
        if cfg["layer"] is None:
            eligible = [n for n, p in layers.items() if p.dim() == 4 and p[0].numel() >= T]
            if not eligible:
                raise ValueError(
                    f"the model has no conv layer with M >= T={T} for RTW; pass config 'layer' "
                    f"(weight layers: {list(layers)})"
                )
            layer = eligible[int(torch.randint(len(eligible), (1,), generator=g))]
        else:
            layer = cfg["layer"]
            if layer not in layers:
                raise ValueError(f"RTW layer {layer!r} is not a weight layer of the model; expected one of {list(layers)}")
        weight = layers[layer]
        if weight.dim() < 2:
            raise ValueError(f"RTW layer {layer!r} has a {weight.dim()}-D weight; need at least 2-D")
        M = int(weight[0].numel())
        if cfg["key_type"] == "normal":
            X = torch.randn(M, T, generator=g)
        else:
            X = torch.randint(0, 2, (M, T), generator=g).to(torch.float32)
            if cfg["key_type"] == "binary_pm1":
                X = X * 2 - 1
        if _is_payload_length(T):
            b = encode_payload(cfg["actor"], T)
            payload = "actor"
        else:
            b = torch.randint(0, 2, (T,), generator=g).to(torch.float32)
            payload = "random"
        stored = {k: cfg[k] for k in ("T", "lam", "key_type", "actor")}
        stored.update(layer=layer, M=M, payload=payload)
        return Key(
            method=self.name,
            config=to_jsonable(stored),
            tensors={"X": X.contiguous(), "b": b},
            model_signature=model_signature(model),
        )

    def check_key(self, model: nn.Module, key: Key) -> None:
        """KeyMismatchError unless the key follows the schema and the model has its layer with W_l of length M."""
        self._check_method(key)
        try:
            validate_key(key)
        except KeyConfigError as exc:
            raise KeyMismatchError(f"malformed RTW key: {exc}") from None
        self._weight(model, key)

    def _weight(self, model: nn.Module, key: Key) -> nn.Parameter:
        self._check_method(key)
        for name in ("X", "b"):
            if name not in key.tensors:
                raise KeyMismatchError(f"RTW key lacks its tensor {name!r}")
        layer = key.config.get("layer")
        layers = weight_layers(model)
        if layer not in layers:
            raise KeyMismatchError(
                f"RTW key is for weight layer {layer!r}, which this model lacks "
                f"(model weight layers: {list(layers)[:8]}{' ...' if len(layers) > 8 else ''})"
            )
        weight = layers[layer]
        M = int(weight[0].numel()) if weight.dim() >= 2 else -1
        if M != int(key.tensors["X"].shape[0]):
            raise KeyMismatchError(
                f"RTW key expects layer {layer!r} to give W_l of length {key.tensors['X'].shape[0]}; "
                f"this model's weight {tuple(weight.shape)} gives {M}"
            )
        return weight

    # -- insertion ------------------------------------------------------------------------
    def training_hook(self, key: Key, *, prepare: Prepare | None = None) -> RTWHook:
        """The Regularization Term as a training hook (``prepare`` is unused by RTW)."""
        self._check_method(key)
        return RTWHook(self, key)

    # -- verification ---------------------------------------------------------------------
    def _logits(self, model: nn.Module, key: Key) -> torch.Tensor:
        """The projections W_l X (before the sign) of the keyed layer."""
        weight = self._weight(model, key)
        with torch.no_grad():
            w = flattened_mean(weight.detach().float())
            return w @ key.tensors["X"].to(device=w.device, dtype=torch.float32)

    def traceability_data(self, model: nn.Module, key: Key, *, prepare: Prepare | None = None) -> torch.Tensor:
        """§3 Algorithmic Integrity: the T projections W_l X, whose signs are the payload; any change of
        the keyed layer's weights moves them."""
        return self._logits(model, key).cpu()

    def decode(self, model: nn.Module, key: Key) -> Decoding:
        """bits = 1[W_l X > 0]; BER against b; Actor from the payload's CRC-checked identifier."""
        logits = self._logits(model, key)
        with torch.no_grad():
            bits = (logits > 0).to(torch.float32).cpu()
            margin = float(logits.abs().min())
        b = key.tensors["b"]
        ber = bit_error_rate(bits, b)
        actor_id: int | None = None
        valid: bool | None = None
        if key.config.get("payload") == "actor":
            decoded = decode_payload(bits)
            actor_id, valid = decoded.actor_id, decoded.valid
        details = {"layer": key.config.get("layer"), "T": int(b.numel()), "min_margin": margin}
        if b.numel() % 8 == 0:  # Symbol Error Rate over 8-bit symbols (IEEE 3304 / NNW-NNT decoder figure)
            details["ser"] = symbol_error_rate(to_symbols(bits), to_symbols(b))
        return Decoding(payload=bits, ber=ber, actor_id=actor_id, valid=valid, details=details)

    def detect(self, model: nn.Module, key: Key, *, prepare: Prepare | None = None) -> Detection:
        """present iff BER = 0 (Tables 12–16); p-value of the bit agreement under fair coins."""
        dec = self.decode(model, key)
        T = int(key.tensors["b"].numel())
        matches = T - round(dec.ber * T)
        p_value = float(binomial_sf(matches, T, 0.5))
        rule = detection_rule(self.name)  # the spec's (BER = 0, Tables 12–16), never the key's
        return Detection(
            present=rule_says_present(rule, dec.ber),
            score=1.0 - dec.ber,
            threshold=1.0 - float(rule["value"]),
            p_value=p_value,
            details={"ber": dec.ber, "matches": matches, "T": T, "actor_id": dec.actor_id, "valid": dec.valid,
                     **dec.details},
        )


#: Entries a Key's config records but keygen derives (M from the layer, payload from T): a Key's
#: config can be given back to keygen (e.g. by Watermark Overwriting); these are recomputed.
DERIVED = ("M", "payload")


def _config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The keygen config, checked against the schema's ``RTW.keygen`` (types, ranges, bounded T)."""
    cfg = dict(DEFAULTS)
    if config:
        cfg.update({k: v for k, v in config.items() if k not in DERIVED})
    validate_config("RTW", cfg, "keygen")
    cfg["lam"] = float(cfg["lam"])
    return cfg


class RTWHook(TrainingHook):
    """Adds λ·BCE(W_l X, b) to the task loss at every step (§7.3.2).

    X and b are moved to the layer's device once, in ``on_train_start``; ``extra_loss`` does no
    host↔device transfer and no synchronisation.
    """

    def __init__(self, method: RTW, key: Key) -> None:
        self.method = method
        self.key = key
        self.lam = float(key.config["lam"])
        self._model: nn.Module | None = None
        self._weight: nn.Parameter | None = None
        self._X: torch.Tensor | None = None
        self._b: torch.Tensor | None = None

    def on_train_start(self, model: nn.Module, ctx: TrainContext) -> None:
        weight = self.method._weight(model, self.key)
        dtype = weight.dtype if weight.dtype.is_floating_point else torch.float32
        self._model, self._weight = model, weight
        self._X = self.key.tensors["X"].to(device=weight.device, dtype=dtype)
        self._b = self.key.tensors["b"].to(device=weight.device, dtype=dtype)

    def extra_loss(self, model: nn.Module, ctx: TrainContext) -> torch.Tensor:
        if self._weight is None or model is not self._model:
            raise RuntimeError("RTWHook.extra_loss called before on_train_start for this model")
        logits = flattened_mean(self._weight) @ self._X
        return F.binary_cross_entropy_with_logits(logits, self._b, reduction="sum") * self.lam


__all__ = ["RTW", "RTWHook", "DEFAULTS", "KEY_TYPES", "flattened_mean"]
