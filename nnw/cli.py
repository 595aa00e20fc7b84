"""The ``nnw`` command: NN traceability use cases of NNW-TEC on the command line.

For Trackers and Distributors who work on model *files* outside pytest (NNW-TEC §5: Mark
embedding, Detection, Decoding, fingerprint extraction and matching; §3 "Algorithmic Integrity").
Also runs as ``python -m nnw``.

Synopsis::

    nnw keygen  --method NCT|RTW|TBW|pkg.mod:Obj --arch A [--arch-kw k=v ...] [--model FILE]
                --seed S [--config k=v ...] --out KEY
    nnw embed   --model IN --arch A [--arch-kw k=v ...] --key KEY --out OUT [--key-out KEY2] [--method M]
    nnw detect  --model FILE --arch A [--arch-kw k=v ...] --key KEY [--method M]
    nnw decode  --model FILE --arch A [--arch-kw k=v ...] --key KEY [--method M]
    nnw fingerprint      --model FILE --arch A [--arch-kw k=v ...] --seed S [--N 4096] [--name NAME] --out REF
    nnw verify-integrity --model FILE --arch A [--arch-kw k=v ...] --reference REF
    nnw match            --model FILE --arch A [--arch-kw k=v ...] [--key REF] --database DIR_OR_FILE ...
    nnw make-cifar10     --root DIR [--train 50000] [--test 10000] [--seed 0] [--force]

Every subcommand takes ``--json`` (one JSON object on stdout instead of the human-readable text).

Exit status: 0 = found / decoded / intact / matched / done; 1 = not found / corrupt payload /
modified / no match; 2 = usage or input error; 3 = internal error (a bug in nnw or in the method
under test); 130 = interrupted. A usage or input error (bad options, missing or corrupt model or
key file, a pickle that would execute code, NaN/Inf weights, a key made for another architecture
or naming an unknown method, a malformed or out-of-range key or config value, a size above its
bound, an output that would overwrite an input) prints ONE line ``nnw <command>: error: ...`` on
stderr (and, with ``--json``, ``{"status": "error", ...}`` on stdout), never a traceback, and
writes nothing; set ``NNW_TRACEBACK=1`` to get the traceback when debugging.

Untrusted files
---------------
* **A file never selects code.** The method is ``--method`` (a built-in, an installed
  ``nnw.methods`` entry point, or ``package.module:Object``: the caller's choice), else the key's
  ``method`` field, which must name a built-in or an installed entry point: never an import path.
* **Key configs** of the built-in methods are checked on loading against
  ``nnw/schemas/key-config.schema.json`` (types, ranges, bounded sizes, tensor dtypes and shapes;
  errors name the file and the field), and a key never sets its decision threshold: the detection
  rules are the spec's (``detection_rules`` in ``nnw/spec/nnw-tec-v1.0.json``).
* **Outputs** never overwrite an input (``embed --out`` = ``--key`` or ``--model``, ``--key-out`` =
  ``--out`` or ``--model``, ``keygen``/``fingerprint --out`` = ``--model`` are refused before
  anything is written, comparing the files themselves, through links). All outputs of a command
  are written to temporary files beside their targets, then renamed: all or none. They get the
  usual mode (0666 less the umask). ``make-cifar10`` writes into a temporary folder under
  ``--root`` and renames it at the end; it refuses to replace an existing
  ``cifar-10-batches-bin/`` without ``--force``.
* **Sizes** from a command line or a key are bounded: key configs by the schema, architectures to
  ``MAX_MODEL_PARAMS`` parameters (counted on the meta device before anything is allocated),
  ``make-cifar10`` to CIFAR-10's own sizes.

Model files are read with :func:`nnw.io.load_state` (safetensors, or a PyTorch state dict loaded
with ``weights_only=True``: a pickle that would run code is refused, not run) and loaded into the
architecture built by :func:`nnw.models.build_model` ``(--arch, **--arch-kw)`` with
:func:`nnw.io.load_into`. Key files are :func:`nnw.methods.keys.save_key` files.

Decisions
---------
* ``embed`` refuses an NCT key in fingerprint mode (a reference inserts nothing).
* ``embed`` is for methods with a post-training insertion (a method class that overrides
  ``TraceabilityMethod.embed``; NCT does, even though its tag says "in-training" since it can
  also insert at epoch α). RTW and TBW insert in training only: ``nnw embed`` refuses them
  (exit 2) and says to train with the method's training hook. NCT's insertion writes the
  Original Traceability Data into the Key, so ``embed`` rewrites the key file (or writes
  ``--key-out``); the key is single-use, a second embed with it is refused.
* **References** (``fingerprint``, used by ``verify-integrity`` and ``match``) are NCT keys in
  fingerprint mode — θ_I, the values of the model at N random weight positions (§7.2.2, passive:
  the weights are not touched) — with a ``reference`` entry in the key config: architecture,
  model file name, and a sha256 digest of the model's full state dict (weights and buffers, per
  tensor and overall; see :func:`weights_digest`). ``N`` defaults to 4096 (fewer if the model
  has fewer weights).
* **Algorithmic Integrity** (``verify-integrity``): intact iff the state dict *of the file* is
  bit-identical to the reference's (digest of names, dtypes, shapes and bytes, taken before the
  tensors are loaded into the architecture, so a float64 re-save is not "bit-identical"; a
  changed stored dtype is reported). A change of a single bit anywhere is "modified", so Gaussian noise
  S = 0.001, 16-bit quantization and 1% pruning are all detected. The report adds which tensors
  changed, the max |Δ| and the number of changed values at the N fingerprint positions, and
  Spearman's rho between the reference and current values there (rho stays near 1 for a slight
  modification of the same model: the model was *modified*, it is not *another* model).
* **match**: the query model is read at each database entry's own positions (so entries taken
  with different seeds can share a database; ``--key`` fixes the positions and then only entries
  taken at them are compared); the score is the one-sided Spearman rho of NCT (§7.2.5). The best
  entry is a match when its p-value is below 5% / (number of entries compared) (Bonferroni: a
  large database must not produce a spurious match 5% of the time per entry). Files in a
  database *directory* that are not fingerprints, or made for another architecture, are skipped
  and listed; a file named explicitly that cannot be read is an input error.
* ``decode`` exits 0 when the payload decodes (CRC valid; for a method without a CRC: BER = 0),
  1 when it is corrupt.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_NEGATIVE = 1
EXIT_ERROR = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130

#: Default number of fingerprint positions of ``nnw fingerprint``.
DEFAULT_FINGERPRINT_N = 4096
#: Version tag of the ``reference`` entry written into a fingerprint key's config.
REFERENCE_FORMAT = "nnw-reference/1"
#: Bound on the parameters of an architecture built from --arch/--arch-kw (counted on the meta device).
MAX_MODEL_PARAMS = 1 << 30
#: Bounds of make-cifar10 (CIFAR-10's own sizes: the stand-in is for timing the spec profile).
MAX_CIFAR_TRAIN, MAX_CIFAR_TEST = 50_000, 10_000


def nct_alpha() -> float:
    """Significance level of NCT detection and of matching: the spec's rule (NNW-TEC §7.2.5)."""
    from nnw.methods.base import detection_rule

    return float(detection_rule("NCT")["alpha"])

_NONFINITE_HINT = " (pass allow_nonfinite=True to accept them)"


class CLIError(Exception):
    """An input or usage error: reported as one line on stderr, exit status 2."""


class _UsageError(Exception):
    """An argparse usage error, reported by :func:`main` as one line (exit status 2)."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``nnw keygen: error: ... (see 'nnw keygen --help')``)."""

    def error(self, message: str):  # type: ignore[override]
        raise _UsageError(self.prog, message)


def seed_value(text: str) -> int:
    """A ``--seed``: an integer in [0, 2**63)."""
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value < 1 << 63:
        raise argparse.ArgumentTypeError(f"must lie in [0, 2**63), got {text}")
    return value


def count_value(text: str) -> int:
    """A count option (``--N``, ``--train``, ``--test``): a decimal integer."""
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------
def parse_value(text: str) -> Any:
    """A ``k=v`` value: JSON (``512``, ``0.5``, ``true``, ``[3,32,32]``), True/False/None, else the string."""
    if text in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[text]
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_kv(items: Sequence[str] | None, option: str) -> dict[str, Any]:
    """``["width=0.5", "num_classes=10"]`` -> ``{"width": 0.5, "num_classes": 10}``."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CLIError(f"{option} expects KEY=VALUE, got {item!r}")
        if key in out:
            raise CLIError(f"{option} {key} given twice")
        out[key] = parse_value(raw.strip())
    return out


def jsonable(obj: Any) -> Any:
    """JSON-safe copy: tensors/arrays to lists, NaN/Inf to None, paths to str."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "tolist"):  # torch / numpy tensors and scalars
        return jsonable(obj.tolist())
    return str(obj)


def fmt(x: Any, digits: int = 4) -> str:
    """Human-readable number."""
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if x == 0.0:
            return "0"
        return f"{x:.{digits}g}"
    return str(x)


def fmt_p(p: Any) -> str:
    """Human-readable p-value (an underflow to 0 is shown as < 1e-300)."""
    return "< 1e-300" if isinstance(p, float) and p == 0.0 else fmt(p, 3)


def _one_line(msg: str) -> str:
    return " ".join(str(msg).replace(_NONFINITE_HINT, "").split())


def weights_digest(state: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """sha256 of a state dict: (overall hex digest, {tensor name: hex digest}).

    Per tensor: sha256 of ``name``, dtype, shape and the raw bytes of the contiguous CPU tensor.
    Overall: sha256 of the sorted ``name:digest`` lines. Bit-identical tensors <=> equal digests
    (up to sha256 collisions).
    """
    import torch

    per: dict[str, str] = {}
    for name, t in state.items():
        t = t.detach().to("cpu").contiguous().reshape(-1)
        h = hashlib.sha256()
        h.update(f"{name}\0{str(t.dtype)}\0{list(state[name].shape)}\0".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
        per[name] = h.hexdigest()
    overall = hashlib.sha256("".join(f"{n}:{per[n]}\n" for n in sorted(per)).encode()).hexdigest()
    return overall, per


# ---------------------------------------------------------------------------------------------
# outputs: never over an input; staged beside their targets, then renamed (all or none)
# ---------------------------------------------------------------------------------------------
def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Do two paths name the same file (through symbolic and hard links; either may not exist yet)?"""
    try:
        if os.path.exists(a) and os.path.exists(b):
            return os.path.samefile(a, b)
    except OSError:
        pass
    return Path(a).resolve() == Path(b).resolve()


def refuse_clashes(outputs: Sequence[tuple[str, str | None]], inputs: Sequence[tuple[str, str | None]],
                   allowed: Sequence[tuple[str, str]] = ()) -> None:
    """CLIError, before anything is written, if an output is an input, another output or a directory.

    ``outputs``/``inputs``: (option, path or None); ``allowed``: (output option, input option) pairs
    that may be the same file by design (``embed`` rewrites ``--key`` when there is no ``--key-out``).
    """
    outs = [(o, p) for o, p in outputs if p]
    for i, (opt, path) in enumerate(outs):
        if os.path.isdir(path):
            raise CLIError(f"{opt} {path!r} is a directory; give a file name")
        for in_opt, in_path in inputs:
            if in_path and (opt, in_opt) not in allowed and same_file(path, in_path):
                raise CLIError(f"{opt} {path!r} is the same file as {in_opt}: refusing to overwrite an input "
                               "(nothing was written)")
        for other_opt, other in outs[:i]:
            if same_file(path, other):
                raise CLIError(f"{opt} and {other_opt} are the same file {path!r}: each output needs its own "
                               "(nothing was written)")


def _make_parents(path: Path) -> list[Path]:
    """Create the missing parent folders of ``path``; returns those created (deepest last)."""
    missing: list[Path] = []
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    for folder in reversed(missing):
        folder.mkdir()
    return list(reversed(missing))


def write_outputs(outputs: Sequence[tuple[str | os.PathLike[str], Callable[[str], Any]]]) -> None:
    """Write every output or none: each ``writer(temporary path)`` writes beside its target, then all
    are renamed over their targets. On failure the temporaries (and folders created) are removed.

    The files get the usual mode (0666 less the umask), not the 0600 of a temporary file.
    """
    from nnw.methods.keys import default_file_mode

    staged: list[tuple[str, Path]] = []
    created: list[Path] = []
    try:
        for target, writer in outputs:
            final = Path(target)
            try:
                created += _make_parents(final)
                fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
            except OSError as exc:
                raise CLIError(f"cannot write {str(final)!r}: {exc.strerror or exc} (nothing was written)") from None
            os.close(fd)
            staged.append((tmp, final))
            writer(tmp)
            os.chmod(tmp, default_file_mode())
        for tmp, final in staged:
            os.replace(tmp, final)
    except BaseException:
        for tmp, _ in staged:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        for folder in reversed(created):
            try:
                folder.rmdir()
            except OSError:
                pass
        raise


# ---------------------------------------------------------------------------------------------
# loading models, keys, methods (each failure -> CLIError with one clear line)
# ---------------------------------------------------------------------------------------------
def build_arch(arch: str, arch_kw: Mapping[str, Any]):
    """The architecture, after counting its parameters on the meta device (at most MAX_MODEL_PARAMS)."""
    import torch

    from nnw.models import MODELS, build_model

    if arch not in MODELS:
        raise CLIError(f"unknown architecture {arch!r}; expected one of {sorted(MODELS)}")
    try:
        with torch.device("meta"):
            n_params = sum(p.numel() for p in build_model(arch, seed=0, **arch_kw).parameters())
        if n_params > MAX_MODEL_PARAMS:
            raise CLIError(f"{arch} with --arch-kw {dict(arch_kw)} has {n_params} parameters, above the bound "
                           f"{MAX_MODEL_PARAMS}")
        return build_model(arch, seed=0, **arch_kw)
    except (TypeError, ValueError, RuntimeError, OverflowError) as exc:
        raise CLIError(f"cannot build {arch} with --arch-kw {dict(arch_kw)}: {exc}") from None


def load_model_and_state(path: str, arch: str, arch_kw: Mapping[str, Any]):
    """(model in eval mode, file metadata, the file's own state dict: dtypes as stored)."""
    from nnw.io import ModelFileError, load_into, load_state

    model = build_arch(arch, arch_kw)
    try:
        state, metadata = load_state(path)
    except ModelFileError as exc:
        raise CLIError(f"model file: {exc}") from None
    try:
        load_into(model, state, source=str(path))
    except ModelFileError as exc:
        raise CLIError(f"{exc} (check --arch/--arch-kw)") from None
    model.eval()
    return model, metadata, state


def load_model(path: str, arch: str, arch_kw: Mapping[str, Any]):
    """Build ``arch`` and load the model file into it; returns (model in eval mode, file metadata)."""
    model, metadata, _ = load_model_and_state(path, arch, arch_kw)
    return model, metadata


def read_key(path: str, what: str = "key file"):
    """A key file, checked (a built-in method's key against the key-config schema); CLIError naming it."""
    from nnw.methods.keys import KeyFileError, load_key

    try:
        return load_key(path)
    except KeyFileError as exc:
        raise CLIError(str(exc).replace("key file", what, 1)) from None


#: The built-in methods' names (as nnw.methods.registry.BUILTINS), for the early check below.
_BUILTIN_NAMES = ("NCT", "RTW", "TBW")


def _unknown_key_method(key_file: str) -> None:
    """Refuse, before any code is imported, a key whose ``method`` is neither built in nor installed.

    Reads only the key's safetensors header (JSON). Anything unreadable is left to :func:`read_key`,
    which reports it; :func:`resolve_method` checks the method again on the loaded key.
    """
    if not os.path.isfile(key_file):  # missing, a folder, a FIFO...: read_key says so (never blocks here)
        return
    try:
        with open(key_file, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 0 < size <= 100_000_000:
                return
            method = json.loads(fh.read(size))["__metadata__"]["method"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return
    if not isinstance(method, str) or method.upper() in _BUILTIN_NAMES:
        return
    from importlib.metadata import entry_points

    if ":" in method or method not in {ep.name for ep in entry_points(group="nnw.methods")}:
        raise CLIError(_unknown_method_message(method))


def _unknown_method_message(method: str) -> str:
    return (
        f"the key's method {method[:80]!r} is not a known method (built in: NCT, RTW, TBW, or installed "
        "as an nnw.methods entry point); a key file never selects the code that runs: pass --method "
        "(a name, or package.module:Object)"
    )


def resolve_method(name: str | None, key=None):
    """The method: ``--method`` (any form, the caller's choice), else the key's ``method`` field, which
    must name a built-in or an installed entry point: a key file never selects code."""
    from nnw.methods.registry import MethodLoadError, UnknownMethodError, get_known_method, get_method

    if name is not None:
        try:
            return get_method(name)
        except MethodLoadError as exc:
            raise CLIError(str(exc)) from None
    if key is None:
        raise CLIError("no method given (--method)")
    try:
        return get_known_method(key.method)
    except UnknownMethodError:
        raise CLIError(_unknown_method_message(key.method)) from None
    except MethodLoadError as exc:
        raise CLIError(str(exc)) from None


def check_key(method, model, key, what: str = "key") -> None:
    from nnw.methods.base import KeyMismatchError

    try:
        method.check_key(model, key)
    except KeyMismatchError as exc:
        raise CLIError(f"{what} does not fit the model: {exc}") from None


def _has_embed(method) -> bool:
    from nnw.methods.base import TraceabilityMethod

    return getattr(type(method), "embed", None) is not TraceabilityMethod.embed


def _reference_info(key) -> dict[str, Any] | None:
    ref = key.config.get("reference")
    return ref if isinstance(ref, dict) else None


# ---------------------------------------------------------------------------------------------
# subcommands: each returns (exit status, result dict, human-readable text)
# ---------------------------------------------------------------------------------------------
Result = tuple[int, dict[str, Any], str]


def cmd_keygen(args: argparse.Namespace) -> Result:
    arch_kw = parse_kv(args.arch_kw, "--arch-kw")
    config = parse_kv(args.config, "--config")
    overlap_file = config.get("overlap_with") if isinstance(config.get("overlap_with"), str) else None
    refuse_clashes([("--out", args.out)], [("--model", args.model), ("--config overlap_with", overlap_file)])
    method = resolve_method(args.method)
    if overlap_file is not None:  # NCT watermark overwriting: an earlier key file
        config["overlap_with"] = read_key(overlap_file, "overlap_with key file")
    if args.model:
        model, _ = load_model(args.model, args.arch, arch_kw)
    else:
        model = build_arch(args.arch, arch_kw)
    try:
        key = method.keygen(model, seed=args.seed, config=config or None)
    except (ValueError, TypeError) as exc:
        raise CLIError(f"{method.name} keygen: {exc}") from None
    from nnw.methods.keys import save_key

    write_outputs([(args.out, lambda tmp: save_key(tmp, key))])
    result = {
        "command": "keygen",
        "status": "ok",
        "method": method.name,
        "arch": args.arch,
        "arch_kw": arch_kw,
        "seed": args.seed,
        "config": key.config,
        "key_file": args.out,
    }
    shown = ", ".join(f"{k}={v}" for k, v in key.config.items() if k not in ("key_seed",))
    text = f"wrote {method.name} key for {args.arch} ({shown}) to {args.out}"
    if method.tags.insertion == "in-training" and not _has_embed(method):
        text += f"\n  {method.name} inserts its mark in training: use this key with the method's training hook"
    return EXIT_OK, result, text


def cmd_embed(args: argparse.Namespace) -> Result:
    key_out = args.key_out or args.key
    refuse_clashes([("--out", args.out), ("--key-out", key_out)], [("--model", args.model), ("--key", args.key)],
                   allowed=[("--key-out", "--key")])
    if args.method is None:
        _unknown_key_method(args.key)
    key = read_key(args.key)
    method = resolve_method(args.method, key)
    if key.config.get("mode") == "fingerprint":
        raise CLIError(
            f"{args.key!r} is a {key.method} key in fingerprint mode (a reference: it reads the model's values "
            "and inserts nothing), so there is nothing to embed; draw a watermark key with "
            f"'nnw keygen --method {key.method}' (mode=watermark, the default)"
        )
    if not _has_embed(method):
        if method.tags.insertion == "none":
            raise CLIError(
                f"{method.name} is a passive (fingerprinting) method: it inserts nothing, there is nothing "
                "to embed; use 'nnw detect' with its key, or 'nnw fingerprint'"
            )
        raise CLIError(
            f"{method.name} has no post-training insertion: its mark is inserted in training "
            f"(tags.insertion={method.tags.insertion!r}), 'nnw embed' cannot insert it; train the model "
            "with the method's training hook (method.training_hook(key) with nnw.training.train)"
        )
    arch_kw = parse_kv(args.arch_kw, "--arch-kw")
    model, metadata = load_model(args.model, args.arch, arch_kw)
    check_key(method, model, key)
    try:
        marked = method.embed(model, key)
    except NotImplementedError as exc:
        raise CLIError(str(exc)) from None
    except ValueError as exc:  # e.g. an NCT key that was already inserted (keys are single-use)
        raise CLIError(f"{method.name} embed: {str(exc).replace('NCT.keygen', chr(39) + 'nnw keygen' + chr(39))}") from None
    from nnw.io import save_state
    from nnw.methods.keys import save_key

    state = marked.state_dict()
    write_outputs([
        (args.out, lambda tmp: save_state(tmp, state, metadata=metadata or None)),
        (key_out, lambda tmp: save_key(tmp, key)),
    ])
    result = {
        "command": "embed",
        "status": "ok",
        "method": method.name,
        "model": args.model,
        "marked_model": args.out,
        "key_file": key_out,
        "key_updated": True,
    }
    what = "its Original Traceability Data" if "original" in key.tensors else "what it recorded"
    text = (
        f"wrote the {method.name}-marked model to {args.out}\n"
        f"  {'rewrote' if key_out == args.key else 'wrote'} the key file {key_out} with {what}: "
        "detection needs this updated key"
    )
    return EXIT_OK, result, text


def _verify_setup(args: argparse.Namespace):
    if args.method is None:
        _unknown_key_method(args.key)
    key = read_key(args.key)
    method = resolve_method(args.method, key)
    arch_kw = parse_kv(args.arch_kw, "--arch-kw")
    model, _ = load_model(args.model, args.arch, arch_kw)
    check_key(method, model, key)
    return key, method, model


def cmd_detect(args: argparse.Namespace) -> Result:
    key, method, model = _verify_setup(args)
    try:
        det = method.detect(model, key)
    except (ValueError, NotImplementedError) as exc:
        raise CLIError(f"{method.name} detect: {exc}") from None
    status = "found" if det.present else "not found"
    result = {
        "command": "detect",
        "status": status,
        "present": bool(det.present),
        "method": method.name,
        "model": args.model,
        "key_file": args.key,
        "score": det.score,
        "threshold": det.threshold,
        "p_value": det.p_value,
        "details": det.details,
    }
    text = (
        f"{status}: {method.name} mark of {args.key} in {args.model}\n"
        f"  score {fmt(det.score)}, threshold {fmt(det.threshold)}, p-value {fmt_p(det.p_value)}"
    )
    extra = {
        k: v for k, v in det.details.items()
        if (isinstance(v, (int, float, str, bool)) or v is None) and k not in ("p_value", "critical_value", "threshold")
    }
    if extra:
        text += "\n  " + ", ".join(f"{k} {fmt(v)}" for k, v in extra.items())
    return (EXIT_OK if det.present else EXIT_NEGATIVE), result, text


def cmd_decode(args: argparse.Namespace) -> Result:
    key, method, model = _verify_setup(args)
    if not method.tags.decodes:
        raise CLIError(f"{method.name} carries no payload bits: it detects, it does not decode; use 'nnw detect'")
    try:
        dec = method.decode(model, key)
    except (ValueError, NotImplementedError) as exc:
        raise CLIError(f"{method.name} decode: {exc}") from None
    bits = "".join(str(int(b)) for b in dec.payload.reshape(-1).tolist())
    if dec.valid is not None:
        ok = bool(dec.valid)
    else:
        ok = dec.ber is None or dec.ber == 0.0
    status = "decoded" if ok else "corrupt"
    expected_actor = key.config.get("actor")
    result = {
        "command": "decode",
        "status": status,
        "method": method.name,
        "model": args.model,
        "key_file": args.key,
        "payload": bits,
        "actor_id": dec.actor_id,
        "valid": dec.valid,
        "ber": dec.ber,
        "key_actor": expected_actor,
        "details": dec.details,
    }
    if dec.actor_id is not None:
        who = f"actor id {dec.actor_id}"
    elif dec.valid is False:
        who = "no actor: the payload is corrupt (CRC check failed)"
    else:
        who = "no actor id in this payload"
    text = (
        f"{status}: {method.name} payload of {args.key} in {args.model}\n"
        f"  {who}\n"
        f"  payload bits {bits}\n"
        f"  BER vs the key's payload {fmt(dec.ber)}"
        + (f" (the key was made for actor {expected_actor})" if expected_actor is not None else "")
    )
    return (EXIT_OK if ok else EXIT_NEGATIVE), result, text


def cmd_fingerprint(args: argparse.Namespace) -> Result:
    refuse_clashes([("--out", args.out)], [("--model", args.model)])
    if args.name is not None and not (0 < len(args.name) <= 1000 and args.name.isprintable()):
        raise CLIError("--name must be a printable name of 1 to 1000 characters")
    from nnw.methods.keys import model_signature, save_key
    from nnw.methods.nct import NCT

    arch_kw = parse_kv(args.arch_kw, "--arch-kw")
    model, _, file_state = load_model_and_state(args.model, args.arch, arch_kw)
    total = model_signature(model)["n_weight_params"]
    n = args.N if args.N is not None else min(DEFAULT_FINGERPRINT_N, total)
    nct = NCT()
    try:
        key = nct.keygen(model, seed=args.seed, config={"N": n, "mode": "fingerprint"})
    except ValueError as exc:
        raise CLIError(f"fingerprint: {exc}") from None
    nct.insert_(model, key)  # fingerprint mode: reads θ_I into key.tensors["original"], weights untouched
    overall, per = weights_digest(file_state)  # the file's tensors as stored (dtypes included)
    name = args.name or Path(args.model).stem
    key.config["reference"] = {
        "format": REFERENCE_FORMAT,
        "name": name,
        "arch": args.arch,
        "arch_kw": arch_kw,
        "model_file": Path(args.model).name,
        "weights_sha256": overall,
        "tensor_sha256": per,
        "tensor_dtypes": {n: str(t.dtype).replace("torch.", "") for n, t in file_state.items()},
    }
    write_outputs([(args.out, lambda tmp: save_key(tmp, key))])
    result = {
        "command": "fingerprint",
        "status": "ok",
        "name": name,
        "model": args.model,
        "reference_file": args.out,
        "N": n,
        "weights_sha256": overall,
    }
    text = (
        f"wrote the reference {args.out} for {name!r}: NCT fingerprint at {n} weight positions (seed {args.seed}) "
        f"+ sha256 {overall[:16]}... of {len(per)} tensors"
    )
    return EXIT_OK, result, text


def cmd_verify_integrity(args: argparse.Namespace) -> Result:
    from nnw.methods.nct import NCT

    ref = read_key(args.reference, "reference file")
    info = _reference_info(ref)
    if ref.method != "NCT" or info is None or "weights_sha256" not in info or "original" not in ref.tensors:
        raise CLIError(
            f"reference file {args.reference!r} is not an integrity reference (it is a {ref.method} key without "
            "a weights digest); make one with 'nnw fingerprint'"
        )
    nct = NCT()
    arch_kw = parse_kv(args.arch_kw, "--arch-kw")
    model, _, file_state = load_model_and_state(args.model, args.arch, arch_kw)
    check_key(nct, model, ref, "the reference")
    # the file's own tensors (dtypes as stored), not the architecture's copy: loading casts a float64
    # re-save back to float32, which would hide the change
    overall, per = weights_digest(file_state)
    want = info.get("tensor_sha256") or {}
    changed = sorted(n for n in set(per) | set(want) if per.get(n) != want.get(n)) if want else None
    ref_dtypes = info.get("tensor_dtypes") or {}
    dtypes = {n: str(t.dtype).replace("torch.", "") for n, t in file_state.items()}
    dtype_changes = {n: [ref_dtypes[n], dtypes[n]] for n in sorted(dtypes) if n in ref_dtypes and ref_dtypes[n] != dtypes[n]}
    if not ref_dtypes:  # an older reference: the digests differ, but which dtype was stored is unknown
        dtype_changes = {}
    original = ref.tensors["original"].double()
    current = nct.extract(model, ref).double()
    dev = (current - original).abs()
    max_dev = float(dev.max())
    n_changed_pos = int((dev > 0).sum())
    det = nct.detect(model, ref)
    digest_equal = overall == info["weights_sha256"]
    if digest_equal and n_changed_pos:
        raise CLIError(
            f"reference file {args.reference!r} is inconsistent: the weights digest matches but "
            f"{n_changed_pos} fingerprint values differ (corrupt or tampered reference)"
        )
    status = "intact" if digest_equal else "modified"
    result = {
        "command": "verify-integrity",
        "status": status,
        "intact": digest_equal,
        "model": args.model,
        "reference_file": args.reference,
        "reference_name": info.get("name"),
        "weights_sha256": overall,
        "reference_sha256": info["weights_sha256"],
        "changed_tensors": changed,
        "dtype_changes": dtype_changes,
        "n_tensors": len(per),
        "N": int(original.numel()),
        "changed_positions": n_changed_pos,
        "max_abs_deviation": max_dev,
        "spearman_rho": det.details.get("rho"),
        "p_value": det.p_value,
        "pearson": det.details.get("pearson"),
    }
    if digest_equal:
        text = f"intact: {args.model} is bit-identical to the reference {info.get('name')!r} (sha256 {overall[:16]}...)"
    else:
        text = (
            f"modified: {args.model} differs from the reference {info.get('name')!r} "
            f"(sha256 {overall[:16]}... != {info['weights_sha256'][:16]}...)"
        )
        if changed is not None:
            shown = ", ".join(changed[:5]) + (f", ... ({len(changed) - 5} more)" if len(changed) > 5 else "")
            text += f"\n  changed tensors: {len(changed)} of {len(per)} ({shown})"
        if dtype_changes:
            shown = ", ".join(f"{n} {a} -> {b}" for n, (a, b) in list(dtype_changes.items())[:3])
            text += f"\n  stored dtype changed: {len(dtype_changes)} tensor(s) ({shown}{', ...' if len(dtype_changes) > 3 else ''})"
    text += (
        f"\n  at the {original.numel()} fingerprint positions: {n_changed_pos} values changed, "
        f"max |deviation| {fmt(max_dev)}, Spearman rho {fmt(det.details.get('rho'), 6)} "
        f"(p-value {fmt_p(det.p_value)})"
    )
    return (EXIT_OK if digest_equal else EXIT_NEGATIVE), result, text


def _database_files(paths: Sequence[str]) -> list[tuple[Path, bool]]:
    """(file, named explicitly) for each database argument; a directory gives its visible files."""
    out: list[tuple[Path, bool]] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend((f, False) for f in sorted(path.iterdir()) if f.is_file() and not f.name.startswith("."))
        elif path.is_file():
            out.append((path, True))
        else:
            raise CLIError(f"database entry {p!r} does not exist")
    return out


def _same_positions(a, b) -> bool:
    import torch

    ka, kb = a.tensors.get("K"), b.tensors.get("K")
    return (
        ka is not None and kb is not None and a.config.get("key_seed") == b.config.get("key_seed")
        and ka.shape == kb.shape and bool(torch.equal(ka, kb))
    )


def cmd_make_cifar10(args: argparse.Namespace) -> Result:
    """A CIFAR-10-sized stand-in data root in the official binary layout (for timing the spec profile).

    Written into a temporary folder under ``--root``, renamed to ``cifar-10-batches-bin/`` at the end:
    a failure leaves nothing behind (folders it created included). An existing
    ``cifar-10-batches-bin/`` is replaced only with ``--force``; a root holding CIFAR-10's python
    batches is refused (a stand-in beside the real data would be ambiguous)."""
    if args.train < 1 or args.test < 1:
        raise CLIError(f"--train and --test must be >= 1, got {args.train} and {args.test}")
    if args.train > MAX_CIFAR_TRAIN or args.test > MAX_CIFAR_TEST:
        raise CLIError(f"--train and --test are bounded by CIFAR-10's sizes, {MAX_CIFAR_TRAIN} and {MAX_CIFAR_TEST}; "
                       f"got {args.train} and {args.test}")
    from nnw.data.cifar10 import make_cifar10_stand_in

    root = Path(args.root)
    final = root / "cifar-10-batches-bin"
    if root.exists() and not root.is_dir():
        raise CLIError(f"--root {args.root!r} exists and is not a directory")
    if (root / "cifar-10-batches-py").exists():
        raise CLIError(f"--root {args.root!r} holds CIFAR-10's python batches (cifar-10-batches-py/): a stand-in "
                       "beside them would be ambiguous; choose another root")
    if (final.exists() or final.is_symlink()) and not args.force:
        raise CLIError(f"{str(final)!r} already exists; pass --force to replace it (or choose another --root)")
    t0 = time.perf_counter()
    try:
        created = _make_parents(root / "x")
        work = Path(tempfile.mkdtemp(prefix=".nnw-make-cifar10-", dir=root))
    except OSError as exc:
        raise CLIError(f"cannot write into --root {args.root!r}: {exc.strerror or exc}") from None
    try:
        staged = make_cifar10_stand_in(work, n_train=args.train, n_test=args.test, seed=args.seed)
        if final.exists() or final.is_symlink():  # --force: move the old folder aside, then swap
            os.replace(final, work / "replaced")
        os.replace(staged, final)
        folder = final
    except BaseException as exc:
        shutil.rmtree(work, ignore_errors=True)
        for d in reversed(created):
            try:
                d.rmdir()
            except OSError:
                pass
        if isinstance(exc, OSError):
            raise CLIError(f"cannot write the stand-in under --root {args.root!r}: {exc.strerror or exc} "
                           "(nothing was left behind)") from None
        raise
    shutil.rmtree(work, ignore_errors=True)
    result = {"command": "make-cifar10", "status": "ok", "folder": str(folder), "train": args.train,
              "test": args.test, "seed": args.seed, "seconds": round(time.perf_counter() - t0, 2)}
    text = (f"wrote {args.train} + {args.test} images of 32 x 32 (10 classes, embedded photos) to {folder}\n"
            f"  use it as: pytest conformance --nnw-profile spec --nnw-data-root {args.root} (timing only: "
            "not CIFAR-10, not for certification)")
    return EXIT_OK, result, text


def cmd_match(args: argparse.Namespace) -> Result:
    from nnw.methods.base import KeyMismatchError
    from nnw.methods.keys import KeyFileError, load_key
    from nnw.methods.nct import NCT
    from nnw.metrics.detection import correlation_detection

    nct = NCT()
    alpha = nct_alpha()
    arch_kw = parse_kv(args.arch_kw, "--arch-kw")
    model, _ = load_model(args.model, args.arch, arch_kw)
    query_key = None
    if args.key:
        query_key = read_key(args.key)
        if query_key.method != "NCT":
            raise CLIError(f"--key {args.key!r} is a {query_key.method} key; match needs an NCT fingerprint key")
        check_key(nct, model, query_key)
    files = _database_files(args.database)
    digest, _ = weights_digest(model.state_dict())
    entries: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for path, explicit in files:
        try:
            entry = load_key(path)
        except KeyFileError as exc:
            if explicit:
                raise CLIError(f"database {exc}") from None
            skipped.append({"file": str(path), "reason": "not an nnw key file"})
            continue
        if entry.method != "NCT" or "original" not in entry.tensors:
            skipped.append({"file": str(path), "reason": f"not a fingerprint ({entry.method} key without NCT values)"})
            continue
        try:
            nct.check_key(model, entry)
        except KeyMismatchError:
            skipped.append({"file": str(path), "reason": "made for another architecture"})
            continue
        if query_key is not None and not _same_positions(query_key, entry):
            skipped.append({"file": str(path), "reason": "taken at other positions than --key"})
            continue
        info = _reference_info(entry) or {}
        c = correlation_detection(
            entry.tensors["original"], nct.extract(model, entry), alpha=alpha, alternative="greater"
        )
        entries.append({
            "name": info.get("name") or path.stem,
            "file": str(path),
            "rho": c.rho,
            "p_value": c.p_value,
            "pearson": c.pearson,
            "N": c.n,
            "identical": (info.get("weights_sha256") == digest) if "weights_sha256" in info else None,
        })
    if not entries:
        reasons = "; ".join(f"{s['file']}: {s['reason']}" for s in skipped[:3]) or "the database is empty"
        raise CLIError(f"no database entry can be compared with this model ({reasons})")
    entries.sort(key=lambda e: (-(e["rho"] if math.isfinite(e["rho"]) else -2.0), e["name"]))
    best = entries[0]
    alpha_eff = alpha / len(entries)
    matched = bool(best["p_value"] < alpha_eff and best["rho"] > 0)
    status = "matched" if matched else "no match"
    result = {
        "command": "match",
        "status": status,
        "matched": matched,
        "model": args.model,
        "best": best if matched else None,
        "best_candidate": best,
        "alpha": alpha,
        "alpha_corrected": alpha_eff,
        "entries": entries,
        "skipped": skipped,
    }
    if matched:
        text = (
            f"matched: {args.model} is {best['name']!r} ({best['file']}): Spearman rho {fmt(best['rho'])}, "
            f"p-value {fmt_p(best['p_value'])}" + (", bit-identical" if best["identical"] else "")
        )
    else:
        text = (
            f"no match: the closest entry is {best['name']!r} with Spearman rho {fmt(best['rho'])}, "
            f"p-value {fmt_p(best['p_value'])}"
        )
    text += f"\n  (a match needs p-value < {fmt(alpha_eff, 3)} = 5% / {len(entries)} entries compared)"
    text += f"\n  {'rank':>4}  {'rho':>8}  {'p-value':>9}  name (file)"
    for i, e in enumerate(entries[:10], 1):
        text += f"\n  {i:>4}  {fmt(e['rho']):>8}  {fmt_p(e['p_value']):>9}  {e['name']} ({e['file']})"
    if len(entries) > 10:
        text += f"\n  ... {len(entries) - 10} more"
    if skipped:
        text += f"\n  skipped {len(skipped)} file(s): " + "; ".join(
            f"{Path(s['file']).name} ({s['reason']})" for s in skipped[:5]
        )
    return (EXIT_OK if matched else EXIT_NEGATIVE), result, text


# ---------------------------------------------------------------------------------------------
# argument parsing and main
# ---------------------------------------------------------------------------------------------
_EPILOG = (
    "exit status: 0 found/decoded/intact/matched/done, 1 not found/corrupt/modified/no match, "
    "2 usage or input error (one line on stderr; nothing written), 3 internal error, 130 interrupted"
)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON object instead of text")

    arch = argparse.ArgumentParser(add_help=False)
    arch.add_argument("--arch", required=True, help="architecture: ResNet8, VGG16, RDN, Pix2pix, PatchGAN, DeepLabV3")
    arch.add_argument("--arch-kw", action="append", metavar="K=V", default=[],
                      help="constructor argument of the architecture, e.g. width=0.5 (repeatable)")

    model_req = argparse.ArgumentParser(add_help=False)
    model_req.add_argument("--model", required=True, metavar="FILE",
                           help="model file: .safetensors, or a state dict .pt/.pth/.bin (loaded without running code)")

    method_opt = argparse.ArgumentParser(add_help=False)
    method_opt.add_argument("--method", help="method (default: the key's, if built in or installed): NCT, RTW, "
                            "TBW, an installed name, or package.module:Object")

    parser = _Parser(
        prog="nnw",
        description="Neural-network traceability (MPAI-NNW / IEEE 3304, NNW-TEC V1.0) on model files: "
        "keys, mark embedding, detection, decoding, fingerprints and integrity.",
        epilog=_EPILOG,
    )
    try:
        from importlib.metadata import version

        parser.add_argument("--version", action="version", version=f"%(prog)s {version('nnw-conformance')}")
    except Exception:  # pragma: no cover - not installed
        pass
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, parents: list, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[*parents, common], help=help, description=help, epilog=_EPILOG)

    p = add("keygen", [arch], "draw a new key for a method and an architecture")
    p.add_argument("--method", required=True, help="NCT, RTW, TBW, an installed name, or package.module:Object")
    p.add_argument("--model", metavar="FILE", help="model file (optional: checks the file fits the architecture)")
    p.add_argument("--seed", type=seed_value, required=True, help="key seed (same seed, same key)")
    p.add_argument("--config", action="append", metavar="K=V", default=[],
                   help="method config, e.g. N=1024, mode=fingerprint, layer=conv1.weight, T=32 (repeatable)")
    p.add_argument("--out", required=True, metavar="KEY", help="key file to write")
    p.set_defaults(func=cmd_keygen)

    p = add("embed", [model_req, arch, method_opt],
            "insert the mark after training (post-training methods, e.g. NCT); rewrites the key file")
    p.add_argument("--key", required=True, metavar="KEY", help="key file from 'nnw keygen' (updated in place)")
    p.add_argument("--out", required=True, metavar="OUT", help="marked model file to write (.safetensors)")
    p.add_argument("--key-out", metavar="KEY2", help="write the updated key here instead of rewriting --key")
    p.set_defaults(func=cmd_embed)

    p = add("detect", [model_req, arch, method_opt], "is the mark of a key present in the model?")
    p.add_argument("--key", required=True, metavar="KEY", help="key file")
    p.set_defaults(func=cmd_detect)

    p = add("decode", [model_req, arch, method_opt], "decode the payload (e.g. RTW): bits, actor id, BER")
    p.add_argument("--key", required=True, metavar="KEY", help="key file")
    p.set_defaults(func=cmd_decode)

    p = add("fingerprint", [model_req, arch], "write a reference: NCT fingerprint + sha256 of all weights")
    p.add_argument("--seed", type=seed_value, required=True, help="seed of the fingerprint positions")
    p.add_argument("--N", type=count_value, default=None,
                   help=f"number of fingerprint positions (default {DEFAULT_FINGERPRINT_N}, or all weights if fewer)")
    p.add_argument("--name", help="name of the model in a database (default: the model file's stem)")
    p.add_argument("--out", required=True, metavar="REF", help="reference file to write")
    p.set_defaults(func=cmd_fingerprint)

    p = add("verify-integrity", [model_req, arch],
            "Algorithmic Integrity: was the model modified since its reference was taken?")
    p.add_argument("--reference", required=True, metavar="REF", help="reference file from 'nnw fingerprint'")
    p.set_defaults(func=cmd_verify_integrity)

    p = add("match", [model_req, arch], "identify the model: best match of its fingerprint in a database")
    p.add_argument("--key", metavar="REF", help="fingerprint key fixing the positions (default: each entry's own)")
    p.add_argument("--database", required=True, nargs="+", metavar="DIR_OR_FILE",
                   help="reference/fingerprint files, or directories of them")
    p.set_defaults(func=cmd_match)

    p = add("make-cifar10", [], "write a CIFAR-10-sized stand-in data root (binary layout) for timing the spec profile")
    p.add_argument("--root", required=True, metavar="DIR", help="data root to write cifar-10-batches-bin/ into")
    p.add_argument("--train", type=count_value, default=50_000, help="training images (default and most: 50000)")
    p.add_argument("--test", type=count_value, default=10_000, help="test images (default and most: 10000)")
    p.add_argument("--seed", type=seed_value, default=0, help="seed of the crops (default 0)")
    p.add_argument("--force", action="store_true", help="replace an existing cifar-10-batches-bin/ under --root")
    p.set_defaults(func=cmd_make_cifar10)
    return parser


def _report_error(prog: str, msg: str, as_json: bool, code: int) -> int:
    """One line ``<prog>: error: <msg>`` on stderr (and one JSON object on stdout with ``--json``)."""
    msg = _one_line(msg)
    if as_json:
        command = prog.split(" ", 1)[1] if " " in prog else None
        print(json.dumps({"command": command, "status": "error", "error": msg, "exit_code": code}))
    print(f"{prog}: error: {msg}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    0 found/ok, 1 not found (the detection verdicts), 2 usage or input error, 3 internal error,
    130 interrupted; every error is one line on stderr (``NNW_TRACEBACK=1`` re-raises instead)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        return _report_error(exc.prog, f"{exc} (see '{exc.prog} --help')", "--json" in argv, EXIT_ERROR)
    command = f"nnw {args.command}"
    try:
        status, result, text = args.func(args)
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CLIError, ValueError, TypeError, OSError, RuntimeError, NotImplementedError, MemoryError) as exc:
        if os.environ.get("NNW_TRACEBACK"):
            raise
        msg = str(exc) or type(exc).__name__
        if isinstance(exc, MemoryError):
            msg = f"out of memory ({msg}); a size in the input is too large for this machine"
        elif not isinstance(exc, CLIError) and type(exc).__name__ not in msg:
            msg = f"{type(exc).__name__}: {msg}"
        return _report_error(command, msg, args.json, EXIT_ERROR)
    except Exception as exc:  # a bug (in nnw or in the method under test): not an answer, not the input's fault
        if os.environ.get("NNW_TRACEBACK"):
            raise
        return _report_error(command, f"internal error ({type(exc).__name__}: {exc}); rerun with NNW_TRACEBACK=1 "
                             "for the traceback and report it", args.json, EXIT_INTERNAL)
    if args.json:
        print(json.dumps(jsonable({**result, "exit_code": status}), indent=2))
    else:
        print(text)
    return status


__all__ = ["main", "build_parser", "weights_digest", "parse_kv", "parse_value", "CLIError", "same_file",
           "refuse_clashes", "write_outputs", "MAX_MODEL_PARAMS"]
