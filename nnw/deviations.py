"""Declared deviations: clauses a method is known to fail, declared with a reason (MPAI-NNW graded
conformance: "conformant with declared deviations").

A deviations file has one entry per line::

    METHOD  test_FAMILY[METHOD-REST-OF-THE-ID-PREFIX   # reason (mandatory)

- ``METHOD`` names the method the entry applies to; the node-id prefix must be that method's
  (``[METHOD-``) and name exactly one clause family (``test_robustness[``, ``test_false_alarms[``,
  ...): a line like ``test_`` that would cover every failure of every method is refused;
- the reason is the text after ``#``; an entry without one is refused.

A declared deviation covers a *failed* clause only (a crash stays an error). An entry that matches
no collected clause, or whose clause passes, is reported in the terminal summary and the
certificate (as pytest's strict xfail would flag it), so a stale declaration cannot linger unseen.
The built-in methods' deviations travel with them (``nnw/methods/deviations.txt``) and apply
whenever a built-in method is certified.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

#: the clause families of conformance/ (a node id's test function)
FAMILIES = ("test_imperceptibility", "test_robustness", "test_false_alarms", "test_cross_actor",
            "test_overwriting", "test_fingerprint_unicity", "test_fingerprint_robustness", "test_integrity")
_PREFIX = re.compile(r"^(?:conformance/test_\w+\.py::)?(?P<family>test_\w+)\[(?P<id>[^\]\s]*\]?)$")


class DeviationsError(ValueError):
    """A deviations file that cannot be used (one clear message naming the file and line)."""


@dataclass(frozen=True)
class Deviation:
    method: str
    prefix: str
    family: str
    reason: str
    source: str          # "file:line"

    def matches(self, nodeid: str) -> bool:
        return nodeid.startswith(self.prefix) or nodeid.split("::", 1)[-1].startswith(self.prefix)


def parse(text: str, source: str) -> list[Deviation]:
    out = []
    for number, raw in enumerate(text.splitlines(), 1):
        line, _, reason = raw.partition("#")
        line, reason = line.strip(), reason.strip()
        if not line:
            continue
        where = f"{source}:{number}"
        parts = line.split()
        if len(parts) != 2:
            raise DeviationsError(f"{where}: expected 'METHOD  test_FAMILY[METHOD-...   # reason', found {line!r}")
        method, prefix = parts
        m = _PREFIX.match(prefix)
        if m is None or m.group("family") not in FAMILIES:
            raise DeviationsError(f"{where}: {prefix!r} does not name one clause family; expected a node-id prefix "
                                  f"starting with one of {', '.join(f + '[' for f in FAMILIES)}")
        if not m.group("id").startswith(f"{method}-") and m.group("id") not in (method, f"{method}]"):
            raise DeviationsError(f"{where}: the prefix {prefix!r} is not a clause of {method} (its id must start "
                                  f"with '{method}-')")
        if not reason:
            raise DeviationsError(f"{where}: the entry {prefix!r} has no reason (write it after '#')")
        out.append(Deviation(method, prefix, m.group("family"), reason, where))
    return out


def load(path: str | Path) -> list[Deviation]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DeviationsError(f"{path}: cannot read the deviations file ({e})") from None
    return parse(text, str(path))


def builtin(methods) -> list[Deviation]:
    """The deviations the built-in methods declare, for those among ``methods`` that are built-in."""
    from nnw.methods.registry import BUILTINS

    text = resources.files("nnw.methods").joinpath("deviations.txt").read_text(encoding="utf-8")
    names = {m.name for m in methods
             if m.name in BUILTINS and f"{type(m).__module__}:{type(m).__qualname__}" == BUILTINS[m.name]}
    return [d for d in parse(text, "nnw/methods/deviations.txt") if d.method in names]
