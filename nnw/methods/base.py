"""The traceability-method protocol: what a technology under evaluation implements.

NNW-TEC §5.2–§5.3 describe any watermarking technology as an *insertion* (mark embedding,
post-training or in training), a *Detection* (is a mark present?) and, for payload-carrying
marks, a *Decoding* (which bits / which Actor?); a fingerprinting technology *extracts* a
fingerprint from a model and *matches* it against a database. §7.2–§7.4 instantiate the
protocol with NCT, RTW and TBW (:mod:`nnw.methods.nct`, ``rtw``, ``tbw``).

A third-party technology subclasses :class:`TraceabilityMethod` outside this repository and
is found by :func:`nnw.methods.registry.get_method` (``"package.module:Object"`` or the
``nnw.methods`` entry-point group). Its :class:`Tags` tell the conformance suite which tests
apply (like scikit-learn's estimator tags): a passive method is not asked for an
Imperceptibility Impact, a method without ``decodes`` is not asked for a Symbol Error Rate, ...

Everything a method needs to find its mark again is in a :class:`Key`, saved by
:func:`nnw.methods.keys.save_key` (safetensors + JSON metadata: loading a key executes no code).
"""
from __future__ import annotations

import abc
import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from nnw.hooks import TrainingHook

#: Tasks of NNW-TEC §6.1 a method may declare it supports.
TASKS: frozenset[str] = frozenset({"classification", "segmentation", "upsampling", "generation"})

#: ``prepare(x_uint8) -> float tensor``: the task's input transform (NCHW uint8 in, model input out).
Prepare = Callable[[torch.Tensor], torch.Tensor]


class KeyMismatchError(ValueError):
    """The Key does not fit the model: other method, other architecture, missing layer, wrong shape."""


def default_prepare(x: torch.Tensor) -> torch.Tensor:
    """Default input transform for uint8 images: ``x / 255`` as float32."""
    return x.to(torch.float32).div_(255.0)


@dataclass(frozen=True)
class Tags:
    """Capability tags of a method; the conformance suite selects the applicable tests from them.

    kind:         "active" = watermark (the insertion alters the weights, so Imperceptibility
                  applies, §7.2.5); "passive" = fingerprint (weights untouched, §5.3).
    insertion:    "post-training" (``embed``), "in-training" (``training_hook``; such a method may
                  also offer ``embed``), or "none" (passive methods).
    detects:      ``detect`` is implemented (false alarm / missed detection rates).
    decodes:      ``decode`` is implemented (Symbol/Bit Error Rate, Actor identification).
    fingerprints: ``extract``/``match`` are implemented.
    multi_mark:   several marks by several Actors coexist in one model (Watermark Overwriting, §7.2.6).
    tasks:        subset of :data:`TASKS` the method applies to.
    integrity:    ``traceability_data`` is implemented, so the method can tell whether a model was
                  modified since it was marked or fingerprinted (§3 Algorithmic Integrity). Optional
                  (default False); a fingerprinting method verifies integrity through its fingerprint
                  (``extract``) without setting it.
    """

    kind: Literal["active", "passive"]
    insertion: Literal["post-training", "in-training", "none"]
    detects: bool
    decodes: bool
    fingerprints: bool
    multi_mark: bool
    tasks: frozenset[str]
    integrity: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("active", "passive"):
            raise ValueError(f"Tags.kind must be 'active' or 'passive', got {self.kind!r}")
        if self.insertion not in ("post-training", "in-training", "none"):
            raise ValueError(
                f"Tags.insertion must be 'post-training', 'in-training' or 'none', got {self.insertion!r}"
            )
        if self.kind == "active" and self.insertion == "none":
            raise ValueError("an active (watermarking) method needs an insertion: 'post-training' or 'in-training'")
        for flag in ("detects", "decodes", "fingerprints", "multi_mark", "integrity"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"Tags.{flag} must be a bool, got {getattr(self, flag)!r}")
        tasks = frozenset(self.tasks)
        unknown = sorted(tasks - TASKS)
        if unknown or not tasks:
            raise ValueError(f"Tags.tasks must be a non-empty subset of {sorted(TASKS)}, got {sorted(tasks)}")
        object.__setattr__(self, "tasks", tasks)


@dataclass
class Detection:
    """Outcome of a Detection (NNW-NNT: feeds the false-alarm and missed-detection rates).

    ``score`` is compared with ``threshold`` by the method's own rule (``present`` is the verdict);
    ``p_value`` is the probability of a score at least this extreme on an unmarked model, when the
    method can state it.
    """

    present: bool
    score: float
    threshold: float
    p_value: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Decoding:
    """Outcome of a Decoding: the decoded bits, their BER against the embedded payload, the Actor.

    ``actor_id``/``valid`` come from :func:`nnw.payload.decode_payload` when the payload is a coded
    Actor identifier, else ``None``.
    """

    payload: torch.Tensor
    ber: float | None
    actor_id: int | None = None
    valid: bool | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class Key:
    """The secret of one insertion (NCT-Key §7.2.1, RTW-Key §7.3.1, TBW-Key §7.4.1).

    method:          name of the method that made it.
    config:          JSON-able parameters (saved as JSON).
    tensors:         named tensors (saved with safetensors).
    model_signature: :func:`nnw.methods.keys.model_signature` of the model the key was made for.

    ``cache`` holds runtime-only derived data (e.g. NCT's de-obfuscated indices); it is never saved,
    not copied (``copy()``, ``deepcopy``, pickle) and not part of equality. Keys compare equal when method, config, signature and every tensor
    (dtype, shape, values) are equal.
    """

    method: str
    config: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    model_signature: dict[str, Any]
    cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Key):
            return NotImplemented
        if (self.method, self.config, self.model_signature) != (other.method, other.config, other.model_signature):
            return False
        if self.tensors.keys() != other.tensors.keys():
            return False
        return all(
            a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.cpu(), b.cpu())
            for a, b in ((self.tensors[k], other.tensors[k]) for k in self.tensors)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def copy(self) -> Key:
        """A deep copy without the runtime cache (tensors cloned)."""
        return Key(
            method=self.method,
            config=copy.deepcopy(self.config),
            tensors={k: v.clone() for k, v in self.tensors.items()},
            model_signature=copy.deepcopy(self.model_signature),
        )

    def __deepcopy__(self, memo: dict[int, Any]) -> Key:
        return self.copy()

    def __getstate__(self) -> dict[str, Any]:  # pickling drops the runtime cache
        state = dict(self.__dict__)
        state["cache"] = {}
        return state


#: Comparisons a spec detection rule may use (``present_if``).
_RULE_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
}


def detection_rule(method: str, version: str = "NNW-TEC-V1.0") -> dict[str, Any]:
    """The spec's detection rule of a technology (``detection_rules`` of the spec's data file).

    The decision threshold of NCT, RTW and TBW is the standard's (NNW-TEC §7.2.5: Spearman one-sided
    at 5 %; §7.3.4: BER = 0; §7.4.4: share > 40 %), read from ``nnw/spec/nnw-tec-v1.0.json``: never
    from a key, a profile or any other file a user hands over.
    """
    from nnw.spec.tables import load_spec_tables

    rules = load_spec_tables(version).get("detection_rules") or {}
    rule = rules.get(method)
    if not isinstance(rule, Mapping):
        raise KeyError(f"the spec data of {version} has no detection rule for {method!r}")
    rule = dict(rule)
    if "present_if" in rule:
        value = rule.get("value")
        if rule["present_if"] not in _RULE_OPS or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"the spec's detection rule for {method!r} is malformed: {rule!r}")
    return rule


def rule_says_present(rule: Mapping[str, Any], statistic: float) -> bool:
    """Apply a :func:`detection_rule` with ``present_if``/``value`` to a statistic (NaN is never present)."""
    return bool(_RULE_OPS[rule["present_if"]](float(statistic), float(rule["value"])))


class TraceabilityMethod(abc.ABC):
    """A traceability technology under evaluation (NNW-TEC §5, §7).

    Subclasses set the class attributes ``name``, ``version`` and ``tags`` and implement
    ``keygen``, ``check_key`` and ``detect``; the other operations are implemented when the
    corresponding tag says so, and otherwise raise ``NotImplementedError``.

    Determinism: ``keygen`` must derive all randomness from ``seed`` (``torch.Generator``
    objects, never the global RNG), so that the same (model, seed, config) gives the same Key.
    """

    name: str
    version: str
    tags: Tags
    #: The configuration the conformance suite uses when the profile has no grid for this method
    #: (one configuration; e.g. ``{"N": 256}``). Built-in methods have grids in the profiles.
    default_config: Mapping[str, Any] = {}

    # -- keys -----------------------------------------------------------------------------
    @abc.abstractmethod
    def keygen(self, model: nn.Module, *, seed: int, config: Mapping[str, Any] | None = None) -> Key:
        """Draw a new Key for ``model`` from ``seed`` (no change to the model)."""

    @abc.abstractmethod
    def check_key(self, model: nn.Module, key: Key) -> None:
        """Raise :class:`KeyMismatchError` if ``key`` does not fit ``model``."""

    # -- insertion ------------------------------------------------------------------------
    def embed(self, model: nn.Module, key: Key) -> nn.Module:
        """Post-training insertion: return a NEW marked model (``model`` is left untouched)."""
        raise NotImplementedError(
            f"{self.name} has no post-training insertion (tags.insertion={self.tags.insertion!r}); "
            "use training_hook(key) to insert the mark in training"
        )

    def training_hook(self, key: Key, *, prepare: Prepare | None = None) -> TrainingHook | None:
        """In-training insertion: a hook for :func:`nnw.training.train`; ``None`` if not supported."""
        return None

    # -- verification ---------------------------------------------------------------------
    @abc.abstractmethod
    def detect(self, model: nn.Module, key: Key, *, prepare: Prepare | None = None) -> Detection:
        """Detection: is the mark of ``key`` present in ``model``?"""

    def decode(self, model: nn.Module, key: Key) -> Decoding:
        """Decoding of the payload carried by the mark (decoding methods only)."""
        raise NotImplementedError(f"{self.name} carries no payload bits: it detects, it does not decode")

    def extract(self, model: nn.Module, key: Key) -> torch.Tensor:
        """Fingerprint extraction (fingerprinting methods only)."""
        raise NotImplementedError(f"{self.name} does not extract fingerprints")

    def traceability_data(self, model: nn.Module, key: Key, *, prepare: Prepare | None = None) -> torch.Tensor:
        """The Traceability Data read from ``model`` with ``key`` (NNW-TEC §3 "Algorithmic Integrity":
        a model is intact iff these equal, bit for bit, those read when it was marked or fingerprinted).

        They must change under any change of the weights the mark lives in — the raw quantities the
        Detection/Decoding thresholds, not the thresholded verdict. Default: the fingerprint."""
        if self.tags.fingerprints:
            return self.extract(model, key)
        raise NotImplementedError(f"{self.name} reads no Traceability Data for integrity verification")

    def match(self, fingerprint: torch.Tensor, database: Mapping[str, torch.Tensor], *,
              key: Key | None = None) -> tuple[str | None, float]:
        """Best match of ``fingerprint`` in ``database``: (name or None if no match, score).
        ``key``: the Key the fingerprint and the entries were extracted with, when the caller has
        it (the suite always passes it); a method may use it to read the values' structure."""
        raise NotImplementedError(f"{self.name} does not match fingerprints")

    # -- helpers for subclasses ------------------------------------------------------------
    def _check_method(self, key: Key) -> None:
        """Raise :class:`KeyMismatchError` if ``key`` was made by another method."""
        if not isinstance(key, Key):
            raise TypeError(f"expected an nnw Key, got {type(key).__name__}")
        if key.method != self.name:
            raise KeyMismatchError(f"this is a {key.method!r} key; {self.name} cannot use it")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, version={self.version!r})"


__all__ = [
    "TASKS",
    "detection_rule",
    "rule_says_present",
    "Prepare",
    "KeyMismatchError",
    "default_prepare",
    "Tags",
    "Detection",
    "Decoding",
    "Key",
    "TraceabilityMethod",
]
