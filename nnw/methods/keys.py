"""Key files and model signatures.

A :class:`~nnw.methods.base.Key` is saved as one safetensors file: the tensors as safetensors
tensors, ``method``/``config``/``model_signature`` as JSON strings in the safetensors metadata.
Loading parses JSON and raw tensor bytes only, so a key file from an untrusted party executes no
code (unlike a pickle). Writes are atomic (temporary file + ``os.replace``), with the usual file
mode (0666 less the umask, not the temporary file's 0600). The runtime ``Key.cache`` is never
written.

A key file is untrusted input. Its ``method`` field is a *name*, never resolved as an import path
(:func:`nnw.methods.registry.get_known_method`). The config and tensors of a built-in method's key
(NCT, RTW, TBW) are checked on loading against ``nnw/schemas/key-config.schema.json`` — types,
ranges, bounded sizes, tensor dtypes and shapes — and every error names the file and the field
(:func:`validate_key`). No key carries a decision threshold: a ``threshold`` field is refused
unless it merely repeats the spec's rule (:func:`nnw.methods.base.detection_rule`), and is then
ignored.

:func:`model_signature` fingerprints a model's *architecture* (parameter names and shapes), not
its values; methods use it to refuse a Key made for another architecture (KeyMismatchError).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from nnw.layers import weight_layers
from nnw.methods.base import Key

#: Version of the key-file layout, stored in the metadata.
KEY_FORMAT = "nnw-key/1"


class KeyFileError(ValueError):
    """A key file is missing, unreadable, or not an nnw key file."""


class KeyConfigError(ValueError):
    """A key config or key tensor is outside the method's schema; the message names the field."""


# ---------------------------------------------------------------------------------------------
# the key-config schema (nnw/schemas/key-config.schema.json)
# ---------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def key_config_schema() -> dict[str, Any]:
    """The published schema of the built-in methods' key configs and tensors (do not mutate)."""
    return json.loads(resources.files("nnw.schemas").joinpath("key-config.schema.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=None)
def _validator(definition: str):
    import jsonschema
    from jsonschema import validators

    base = jsonschema.Draft202012Validator

    def is_integer(checker, x) -> bool:  # a JSON integer: not 3.0, not True
        return isinstance(x, int) and not isinstance(x, bool)

    def is_number(checker, x) -> bool:  # finite: NaN passes every range check, so it is refused here
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

    checker = base.TYPE_CHECKER.redefine_many({"integer": is_integer, "number": is_number})
    strict = validators.extend(base, type_checker=checker)
    schema = key_config_schema()
    return strict({"$ref": f"#/$defs/{definition}", "$defs": schema["$defs"]})


def schema_methods() -> list[str]:
    """Methods whose keys the schema describes (the built-ins)."""
    return sorted(key_config_schema()["x-nnw-tensors"])


def bound(name: str) -> int:
    """A size bound of the schema's ``x-nnw-bounds`` (e.g. ``"TBW.trigger_values"``)."""
    return int(key_config_schema()["x-nnw-bounds"][name])


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_TYPE_WORDS = {"integer": "an integer", "number": "a finite number", "string": "a string", "object": "an object",
               "array": "a list", "null": "null", "boolean": "true or false"}


def _describe(error, method: str, kind: str) -> str:
    """One line for a jsonschema error: the field and what is wrong with its value."""
    path = [str(p) for p in error.absolute_path]
    v, want, inst = error.validator, error.validator_value, error.instance
    if v == "additionalProperties" and isinstance(inst, Mapping):
        known = sorted((error.schema.get("properties") or {}))
        unexpected = sorted(k for k in inst if k not in known)
        where = f" in {'.'.join(path)!r}" if path else ""
        return f"unknown {method} config key(s) {unexpected}{where}; expected {known}"
    if v == "required" and isinstance(inst, Mapping):
        missing = [r for r in want if r not in inst]
        where = f"field {'.'.join(path)!r} of the " if path else ""
        return f"{where}{method} config lacks the field(s) {missing}"
    if v == "maximum":
        what = f"{_short(inst)} exceeds its bound {want}"
    elif v == "exclusiveMaximum":
        what = f"{_short(inst)} must be below {want}"
    elif v == "minimum":
        what = f"{_short(inst)} is below its minimum {want}"
    elif v == "exclusiveMinimum":
        what = f"{_short(inst)} must be above {want}"
    elif v == "type":
        types = [want] if isinstance(want, str) else list(want)
        what = f"{_short(inst)} is not " + " or ".join(_TYPE_WORDS.get(t, t) for t in types)
    elif v == "enum":
        what = f"{_short(inst)} is not one of {want}"
    elif v == "const":
        what = f"{_short(inst)} is not {want!r}"
    elif v in ("minItems", "maxItems"):
        what = f"{_short(inst)} must have {want} entries" if error.schema.get("minItems") == error.schema.get("maxItems") \
            else f"{_short(inst)} has a wrong number of entries ({v} {want})"
    elif v in ("minLength", "maxLength"):
        what = f"{_short(inst)} has a wrong length ({v} {want})"
    elif v == "pattern":
        what = f"{_short(inst)} does not have the expected form"
    else:
        what = _short(error.message, 200)
    field = ".".join(path)
    return f"{method} config field {field!r}: {what}" if field else f"{method} config: {what}"


def validate_config(method: str, config: Mapping[str, Any], kind: str = "key") -> None:
    """:class:`KeyConfigError` (naming the field) unless ``config`` follows the schema ``<method>.<kind>``.

    ``kind`` is ``"keygen"`` (what keygen accepts) or ``"key"`` (what a key's config holds).
    """
    from jsonschema.exceptions import best_match

    if not isinstance(config, Mapping):
        raise KeyConfigError(f"{method} config must be a JSON object, got {type(config).__name__}")
    error = best_match(_validator(f"{method}.{kind}").iter_errors(dict(config)))
    if error is not None:
        raise KeyConfigError(_describe(error, method, kind))


def _threshold_field(method: str, config: Mapping[str, Any]) -> None:
    """A key never sets its own decision threshold: ``threshold`` is refused unless it repeats the spec's rule."""
    if "threshold" not in config:
        return
    from nnw.methods.base import detection_rule

    rule = detection_rule(method)
    value = config["threshold"]
    spec = rule.get("value")
    if spec is not None and not isinstance(value, bool) and isinstance(value, (int, float)) and value == spec:
        return  # an older key repeating the spec's value: ignored
    raise KeyConfigError(
        f"{method} config field 'threshold': {_short(value)} refused: a key does not set its decision "
        f"threshold; {method} decides with the spec's rule ({rule.get('statistic')} {rule.get('present_if', '')} "
        f"{spec if spec is not None else rule.get('alpha')}, NNW-TEC §{rule.get('section')})"
    )


def without_spec_threshold(method: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` without a ``threshold`` field that only repeats the spec's rule (refused otherwise)."""
    _threshold_field(method, config)
    return {k: v for k, v in config.items() if k != "threshold"}


def _dim(spec: Any, config: Mapping[str, Any]) -> int | None:
    if isinstance(spec, int):
        return spec
    name, _, index = str(spec).partition(".")
    value = config.get(name)
    if index:
        try:
            value = value[int(index)]
        except (TypeError, IndexError, ValueError, KeyError):
            return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def validate_key(key: Key) -> None:
    """:class:`KeyConfigError` unless a built-in method's key follows the schema (config, then tensors).

    Keys of other methods pass unchecked (their method's ``check_key`` is theirs).
    """
    specs = key_config_schema()["x-nnw-tensors"].get(key.method)
    if specs is None:
        return
    config = without_spec_threshold(key.method, key.config)
    validate_config(key.method, config, "key")
    from jsonschema.exceptions import best_match

    error = best_match(_validator("model_signature").iter_errors(key.model_signature))
    if error is not None:
        raise KeyConfigError(_describe(error, key.method, "key").replace(" config", " model_signature", 1))
    tensors = specs["tensors"]
    for name, t in key.tensors.items():
        spec = tensors.get(name)
        if spec is None:
            if not specs.get("additional", False):
                raise KeyConfigError(f"{key.method} key tensor {_short(name)} is unknown; expected {sorted(tensors)}")
            continue
        if str(t.dtype) != f"torch.{spec['dtype']}":
            raise KeyConfigError(f"{key.method} key tensor {name!r} has dtype {str(t.dtype).replace('torch.', '')}, "
                                 f"expected {spec['dtype']}")
        shape = [_dim(d, config) for d in spec["shape"]]
        if list(t.shape) != shape:
            want = " x ".join(f"{d}" if isinstance(d, int) else str(d) for d in spec["shape"])
            raise KeyConfigError(f"{key.method} key tensor {name!r} has shape {list(t.shape)}, expected [{want}] = {shape} "
                                 "from the key's config")
    missing = [n for n, spec in tensors.items() if spec.get("required") and n not in key.tensors]
    if missing:
        raise KeyConfigError(f"{key.method} key lacks its tensor(s) {missing}")
    if key.method == "TBW":
        labels = key.tensors["labels"]
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= config["num_classes"]):
            raise KeyConfigError(f"TBW key tensor 'labels' holds values outside [0, num_classes={config['num_classes']})")


def model_signature(model: nn.Module) -> dict[str, Any]:
    """Architecture signature of ``model`` (JSON-able).

    n_params:          number of scalar parameters;
    layers_sha:        sha256 of the sorted (name, shape) pairs of all parameters;
    weight_layers:     ``[[name, shape], ...]`` of :func:`nnw.layers.weight_layers`, in order
                       (the index space of NCT, the candidate layers of RTW);
    n_weight_params:   number of scalars in those weight layers.
    """
    params = [(name, list(p.shape)) for name, p in model.named_parameters()]
    digest = hashlib.sha256(json.dumps(sorted(params), separators=(",", ":")).encode()).hexdigest()
    wl = [[name, list(p.shape)] for name, p in weight_layers(model).items()]
    return {
        "n_params": int(sum(p.numel() for p in model.parameters())),
        "layers_sha": digest,
        "weight_layers": wl,
        "n_weight_params": int(sum(p.numel() for p in weight_layers(model).values())),
    }


def to_jsonable(obj: Any, what: str = "config") -> Any:
    """Round-trip ``obj`` through JSON (tuples become lists); TypeError/ValueError if it is not JSON-able."""
    try:
        return json.loads(json.dumps(obj, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"Key {what} must be JSON-serializable (no tensors, no NaN): {exc}") from None


def default_file_mode() -> int:
    """The mode a new file gets from ``open()``: 0666 less the process umask."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: read the umask by setting it (and restore it at once)
    os.umask(mask)
    return 0o666 & ~mask


def save_key(path: str | os.PathLike[str], key: Key) -> Path:
    """Write ``key`` to ``path`` atomically (safetensors; JSON metadata). Returns the path.

    The file gets the usual mode (0666 less the umask)."""
    if not isinstance(key, Key):
        raise TypeError(f"save_key expects an nnw Key, got {type(key).__name__}")
    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    for name, t in key.tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"Key.tensors[{name!r}] must be a torch.Tensor, got {type(t).__name__}")
        tensors[name] = t.detach().to("cpu").contiguous().clone()
    metadata = {
        "format": KEY_FORMAT,
        "method": str(key.method),
        "config": json.dumps(to_jsonable(key.config, "config"), sort_keys=True),
        "model_signature": json.dumps(to_jsonable(key.model_signature, "model_signature"), sort_keys=True),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_key(path: str | os.PathLike[str]) -> Key:
    """Read a key written by :func:`save_key`; :class:`KeyFileError` naming the file (and the field) if it
    cannot, or if a built-in method's key does not follow the schema (:func:`validate_key`)."""
    path = Path(path)
    if not path.is_file():
        raise KeyFileError(f"key file {str(path)!r} does not exist")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as exc:  # safetensors raises several error types for corrupt files
        raise KeyFileError(f"key file {str(path)!r} is not a readable safetensors file: {exc}") from None
    if metadata.get("format") != KEY_FORMAT:
        raise KeyFileError(
            f"key file {str(path)!r} is not an nnw key file (metadata format "
            f"{metadata.get('format')!r}, expected {KEY_FORMAT!r})"
        )
    for field in ("method", "config", "model_signature"):
        if field not in metadata:
            raise KeyFileError(f"key file {str(path)!r} has corrupt metadata: it lacks the field {field!r}")
    method = metadata["method"]
    parsed: dict[str, Any] = {}
    for field in ("config", "model_signature"):
        try:
            parsed[field] = json.loads(metadata[field], parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            raise KeyFileError(f"key file {str(path)!r}: field {field!r} is not valid JSON "
                               f"({_short(str(exc) or type(exc).__name__, 120)})") from None
        if not isinstance(parsed[field], dict):
            raise KeyFileError(f"key file {str(path)!r}: field {field!r} must be a JSON object, "
                               f"got {type(parsed[field]).__name__}")
    if not method or len(method) > 200 or not method.isprintable():
        raise KeyFileError(f"key file {str(path)!r}: field 'method' must be a short printable name, got {_short(method)}")
    key = Key(method=method, config=parsed["config"], tensors=tensors, model_signature=parsed["model_signature"])
    try:
        validate_key(key)
    except KeyConfigError as exc:
        raise KeyFileError(f"key file {str(path)!r}: {exc}") from None
    return key


__all__ = [
    "KEY_FORMAT",
    "KeyFileError",
    "KeyConfigError",
    "key_config_schema",
    "validate_config",
    "validate_key",
    "without_spec_threshold",
    "bound",
    "default_file_mode",
    "model_signature",
    "to_jsonable",
    "save_key",
    "load_key",
]
