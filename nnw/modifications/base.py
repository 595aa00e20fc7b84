"""Modification: the attacks of the NNW-NNT Modification table (IEEE 3304 robustness procedure).

NNW-TEC §3 (Terms) defines a Modification as "the result of an attack that was
performed during NN Traceability"; the IEEE 3304 Modification table lists the
types (Gaussian noise addition, L1 pruning, random pruning, quantization,
fine-tuning) and NNW-TEC §7.2.6, §7.3.6, §7.4.6 add Watermark Overwriting and the
presentation of MPAI-NNW V1 adds knowledge distillation.

A :class:`Modification` is a value object (type + Parameter), identified by a
canonical ``name`` such as ``pruning(P=50)`` that is used in test IDs, reports and
cache keys and is parsed back by :func:`parse_modification`. ``apply`` returns a
*new* model and never alters its input.

Parameter names follow the spec: ``S`` (noise standard-deviation ratio), ``P``
(percentage of weights), ``B`` (bits), ``E`` (epochs), ``T`` (distillation
temperature), ``k`` (number of overwriting marks).

Randomness: every random choice is drawn from a ``torch.Generator`` on the CPU,
seeded per weight layer from ``(seed, layer name)`` (:func:`layer_generator`), so
a layer's draw does not depend on which other layers are selected nor on the
device the model lives on.

One module over 400 lines on purpose: every Modification of the NNW-NNT table (and its
name parser and registry) in one place, so the table reads as one list.
"""

from __future__ import annotations

import abc
import copy
import hashlib
import importlib
import math
import numbers
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from nnw.layers import resolve_layers

#: Families of the Modification catalogue (NNW-NNT Modification table, IEEE 3304 table,
#: NNW-TEC §7.x.6, MPAI-NNW V1 presentation).
FAMILIES: tuple[str, ...] = (
    "noise",
    "pruning",
    "random_pruning",
    "quantization",
    "finetuning",
    "distillation",
    "overwriting",
)

#: Registry ``family -> Modification subclass``; extended by :func:`register`.
MODIFICATIONS: dict[str, type[Modification]] = {}

# Characters that would break the canonical name's grammar (see ``Modification.name``).
_RESERVED = re.compile(r"[\s,()=+]")
_FAMILY_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_NAME_RE = re.compile(r"^\s*([a-z][a-z0-9_]*)\s*\((.*)\)\s*$", re.DOTALL)


@dataclass
class ModificationContext:
    """What training-based Modifications (fine-tuning, distillation, overwriting) need.

    Weight-space Modifications (noise, pruning, quantization) ignore it. Fields are
    typed loosely because their types belong to other parts of ``nnw``:

    - ``task``: the task the model was trained for (data, loss, evaluation; ``nnw.tasks``).
    - ``train``: the training function used to resume training (``nnw.training``).
    - ``device``: where training runs (``"cpu"``, ``"cuda"``, a ``torch.device``).
    - ``method``: the watermarking Method under test (``nnw.methods``), e.g. to insert
      additional Marks for Watermark Overwriting.
    - ``key``: the Key of the Mark already in the model, when the Modification needs it.
    - ``config``: free-form settings (learning rate, batch size, ...).
    """

    task: Any = None
    train: Callable[..., Any] | None = None
    device: Any = None
    method: Any = None
    key: Any = None
    config: Mapping[str, Any] = field(default_factory=dict)


def register(cls: type[Modification]) -> type[Modification]:
    """Class decorator adding a Modification subclass to :data:`MODIFICATIONS` under its ``family``."""
    if not (isinstance(cls, type) and issubclass(cls, Modification)):
        raise TypeError(f"register expects a Modification subclass, got {cls!r}")
    family = getattr(cls, "family", None)
    if not isinstance(family, str) or not _FAMILY_RE.match(family):
        raise ValueError(
            f"{cls.__name__}.family must be a lower-case identifier such as 'pruning', got {family!r}"
        )
    existing = MODIFICATIONS.get(family)
    if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
        raise ValueError(
            f"Modification family {family!r} is already registered to {existing.__name__}; "
            f"cannot register {cls.__name__} under the same family"
        )
    MODIFICATIONS[family] = cls
    return cls


def make_modification(family: str, **params: Any) -> Modification:
    """Build a registered Modification by family name, e.g. ``make_modification("pruning", P=50)``."""
    _load_family(family)
    try:
        cls = MODIFICATIONS[family]
    except KeyError:
        raise ValueError(
            f"unknown Modification family {family!r}; expected one of {sorted(MODIFICATIONS)}"
        ) from None
    return cls(**params)


def _load_family(family: str) -> None:
    """Import ``nnw.modifications.<family>`` for a catalogue family not registered yet.

    Training-based Modifications live in modules named after their family
    (``finetuning.py``, ``distillation.py``, ``overwriting.py``) and register
    themselves on import; loading them lazily avoids import cycles with ``nnw.training``.
    """
    if family in MODIFICATIONS or family not in FAMILIES:
        return
    module = f"{__package__}.{family}"
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:  # the module exists but one of its imports is missing
            raise


def parse_modification(text: str) -> Modification:
    """Inverse of :attr:`Modification.name`: ``parse_modification("pruning(P=50)")``.

    Grammar: ``family(key=value,key=value,...)``; ``layers`` takes qualified
    parameter names joined by ``+``; other values are read as int, else float,
    else string.
    """
    if not isinstance(text, str):
        raise TypeError(f"parse_modification expects a str, got {type(text).__name__}")
    match = _NAME_RE.match(text)
    if match is None:
        raise ValueError(
            f"expected a Modification name of the form 'family(key=value,...)' "
            f"such as 'pruning(P=50)', got {text!r}"
        )
    family, body = match.group(1), match.group(2).strip()
    params: dict[str, Any] = {}
    if body:
        for item in body.split(","):
            key, sep, raw = item.partition("=")
            key, raw = key.strip(), raw.strip()
            if not sep or not key or not raw:
                raise ValueError(
                    f"expected 'key=value' items in Modification name {text!r}, got {item.strip()!r}"
                )
            if key in params:
                raise ValueError(f"parameter {key!r} given twice in Modification name {text!r}")
            params[key] = raw.split("+") if key == "layers" else _parse_value(raw)
    try:
        return make_modification(family, **params)
    except TypeError as exc:  # unexpected keyword for that family
        raise ValueError(f"cannot build Modification from {text!r}: {exc}") from None


def _parse_value(raw: str) -> Any:
    for convert in (int, float):
        try:
            return convert(raw)
        except ValueError:
            pass
    return raw


def format_number(value: Any) -> str:
    """Shortest exact text for a parameter value: ``50`` for 50.0, ``0.01``, ``1e-05``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    x = float(value)
    if math.isfinite(x) and x.is_integer() and abs(x) < 1e16:
        return str(int(x))
    return repr(x)


def layer_generator(seed: int, layer: str) -> torch.Generator:
    """CPU ``torch.Generator`` seeded from ``(seed, layer name)`` (stable across runs and platforms)."""
    digest = hashlib.sha256(f"{int(seed)}:{layer}".encode()).digest()
    return torch.Generator(device="cpu").manual_seed(int.from_bytes(digest[:8], "little") >> 1)


# --- parameter validation helpers (clear ValueErrors, spec names) --------------------------


def _described(name: str, value: Any, kind, kind_text: str, low, high, what: str) -> tuple[str, str]:
    """The parameter's description and range text; ValueError when ``value`` is not of ``kind``."""
    desc = f"{name} ({what})" if what else name
    rng = _range_text(low, high)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"expected {desc} to be {kind_text}{rng}, got {value!r} ({type(value).__name__})")
    return desc, rng


def check_real(name: str, value: Any, *, low: float | None = None, high: float | None = None,
               what: str = "") -> float:
    """Validate a finite real parameter in ``[low, high]``; return it as ``float``."""
    desc, rng = _described(name, value, numbers.Real, "a real number", low, high, what)
    x = float(value)
    if not math.isfinite(x):
        raise ValueError(f"expected {desc} to be a finite real number{rng}, got {value!r}")
    if (low is not None and x < low) or (high is not None and x > high):
        raise ValueError(f"expected {desc}{rng}, got {value!r}")
    return x


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None,
              what: str = "") -> int:
    """Validate an integer parameter in ``[low, high]`` (floats and bools are rejected)."""
    desc, rng = _described(name, value, numbers.Integral, "an integer", low, high, what)
    n = int(value)
    if (low is not None and n < low) or (high is not None and n > high):
        raise ValueError(f"expected {desc}{rng}, got {value!r}")
    return n


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Validate a string option among ``choices``."""
    if value not in choices:
        raise ValueError(f"expected {name} to be one of {list(choices)}, got {value!r}")
    return str(value)


def _range_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f" in [{format_number(low)}, {format_number(high)}]"
    if low is not None:
        return f" >= {format_number(low)}"
    if high is not None:
        return f" <= {format_number(high)}"
    return ""


def _normalize_layers(layers: Sequence[str] | str | None) -> tuple[str, ...] | None:
    if layers is None:
        return None
    if isinstance(layers, str):
        layers = layers.split("+")
    if not isinstance(layers, Sequence):
        raise ValueError(
            f"expected layers to be None (all weight layers) or a sequence of qualified "
            f"parameter names, got {layers!r}"
        )
    names: list[str] = []
    for n in layers:
        if not isinstance(n, str) or not n or _RESERVED.search(n):
            raise ValueError(
                "expected layer names to be non-empty qualified parameter names without "
                f"whitespace or any of ',()=+' (e.g. 'features.0.weight'), got {n!r}"
            )
        if n not in names:
            names.append(n)
    if not names:
        raise ValueError("expected at least one layer name (or layers=None for all weight layers), got none")
    return tuple(names)


class Modification(abc.ABC):
    """A Modification (type + Parameter) of the NNW-NNT Modification table.

    Subclasses set ``family`` and ``needs_training``, validate their parameters in
    ``__init__`` and pass them to ``super().__init__`` in spec order, and implement
    :meth:`_modify`, which edits the deep copy made by :meth:`apply` in place (or
    returns a replacement module, e.g. a distilled student).

    ``defaults`` lists optional parameters omitted from ``name``/``id`` when at their
    default value (e.g. pruning's ``scope="global"``); ``layers`` (qualified weight
    names, ``None`` = all weight layers, see ``nnw.layers``) is shown only when set.
    """

    family: ClassVar[str]
    needs_training: ClassVar[bool] = False
    #: Trains a new model from scratch (distillation, extraction): each seed gives another model,
    #: whose usefulness varies as much as a fresh training's does.
    fresh_model: ClassVar[bool] = False
    defaults: ClassVar[Mapping[str, Any]] = {}
    #: Bumped when the procedure behind an unchanged ``name`` changes what it produces.
    procedure: ClassVar[int] = 1

    def __init__(self, params: Mapping[str, Any], layers: Sequence[str] | str | None = None) -> None:
        self._params: dict[str, Any] = dict(params)
        self._layers = _normalize_layers(layers)

    # --- identity -----------------------------------------------------------------------
    @property
    def params(self) -> dict[str, Any]:
        """The Parameter as an ordered dict (spec names first, then options); a copy."""
        return dict(self._params)

    @property
    def layers(self) -> tuple[str, ...] | None:
        """Selected weight layers by qualified name, or ``None`` for all of them."""
        return self._layers

    def _shown_params(self) -> list[tuple[str, Any]]:
        return [
            (k, v) for k, v in self._params.items()
            if not (k in self.defaults and self.defaults[k] == v)
        ]

    @property
    def name(self) -> str:
        """Canonical, parseable name, e.g. ``pruning(P=50)``, ``noise(S=0.1,layers=conv1.weight+fc.weight)``."""
        items = [f"{k}={format_number(v)}" for k, v in self._shown_params()]
        if self._layers is not None:
            items.append("layers=" + "+".join(self._layers))
        return f"{self.family}({','.join(items)})"

    @property
    def cache_id(self) -> str:
        """What identifies the Modified model in caches: ``name``, plus ``#procedure`` once that is > 1."""
        return self.name if self.procedure == 1 else f"{self.name}#{self.procedure}"

    @property
    def id(self) -> str:
        """Test-ID form, e.g. ``pruning-P50``, ``noise-S0.01``, ``pruning-P50-scope=layer``."""
        parts = [self.family]
        for k, v in self._shown_params():
            text = format_number(v)
            parts.append(f"{k}{text}" if isinstance(v, numbers.Real) and not isinstance(v, bool)
                         else f"{k}={text}")
        if self._layers is not None:
            parts.append("layers=" + "+".join(self._layers))
        return "-".join(parts)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    def __str__(self) -> str:
        return self.name

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Modification):
            return NotImplemented
        return type(self) is type(other) and self.name == other.name

    def __hash__(self) -> int:
        return hash((type(self).__qualname__, self.name))

    # --- application --------------------------------------------------------------------
    def select_layers(self, model: nn.Module) -> dict[str, nn.Parameter]:
        """The weight layers this Modification acts on (``nnw.layers.resolve_layers``)."""
        return resolve_layers(model, None if self._layers is None else list(self._layers))

    def apply(self, model: nn.Module, *, seed: int = 0,
              context: ModificationContext | None = None) -> nn.Module:
        """Return a Modified deep copy of ``model``; ``model`` itself is never altered."""
        if not isinstance(model, nn.Module):
            raise TypeError(f"{self.name}: expected a torch.nn.Module, got {type(model).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise ValueError(f"{self.name}: expected an integer seed, got {seed!r}")
        if self.needs_training and context is None:
            raise ValueError(
                f"{self.name} is a training-based Modification: expected a ModificationContext "
                "(task, train function, device, ...) via apply(..., context=...), got None"
            )
        if context is not None and not isinstance(context, ModificationContext):
            raise TypeError(
                f"{self.name}: expected context to be a ModificationContext, got {type(context).__name__}"
            )
        # Resolve the layer selection on the input first, so bad names fail before copying.
        self.select_layers(model)
        modified = copy.deepcopy(model)
        result = self._modify(modified, seed=int(seed), context=context)
        return modified if result is None else result

    @abc.abstractmethod
    def _modify(self, model: nn.Module, *, seed: int,
                context: ModificationContext | None) -> nn.Module | None:
        """Modify ``model`` (already a private deep copy) in place, or return a replacement."""


class WeightModification(Modification):
    """A Modification acting directly on weight values (noise, pruning, quantization).

    Subclasses implement :meth:`modify_weights`, called under ``torch.no_grad()`` with
    the selected weight layers of the private copy.
    """

    needs_training: ClassVar[bool] = False

    def _modify(self, model: nn.Module, *, seed: int,
                context: ModificationContext | None) -> nn.Module | None:
        layers = self.select_layers(model)
        with torch.no_grad():
            self.modify_weights(layers, seed=seed)
        return None

    @abc.abstractmethod
    def modify_weights(self, layers: dict[str, nn.Parameter], *, seed: int) -> None:
        """Modify the given weights in place."""


__all__ = [
    "FAMILIES",
    "MODIFICATIONS",
    "Modification",
    "ModificationContext",
    "WeightModification",
    "check_choice",
    "check_int",
    "check_real",
    "format_number",
    "layer_generator",
    "make_modification",
    "parse_modification",
    "register",
]
