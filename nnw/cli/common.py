"""What every ``nnw`` command shares: exit statuses, bounds, the one-line error, option values,
output formatting, and the writing of outputs (never over an input; staged beside their targets,
then renamed: all or none)."""
from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
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


#: What a command returns: (exit status, result dict for --json, human-readable text).
Result = tuple[int, dict[str, Any], str]

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


