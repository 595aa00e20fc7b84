"""What the spec says of each technology (NCT §7.2, RTW §7.3, TBW §7.4), for code that must not name one.

Generic code (the cases, the cost verdicts, the report's figures) asks here, by the method's name,
for what the standard ties to a technology: the published tables that a (method, Modification
family, model) reproduces (read from the tables' own metadata: ``method``, ``property``,
``modification``, ``model``), the sections of its imperceptibility, robustness and computational cost
evaluations, its detection criterion in words, the detection figure its tables print, and the figures of its cost section. The facts that are not table
metadata are the ``technologies`` entry of ``nnw/spec/nnw-tec-v1.0.json``. A method the spec
does not define gets ``None`` (or the generic text) everywhere.
"""
from __future__ import annotations

from typing import Any

from nnw.spec.tables import load_spec_tables

SPEC_VERSION = "NNW-TEC-V1.0"


def _tables(version: str) -> list[tuple[str, dict[str, Any]]]:
    tables = load_spec_tables(version)["tables"]
    return sorted(tables.items(), key=lambda kv: (0, int(kv[0])) if kv[0].isdigit() else (1, kv[0]))


def technology(method: str | None, version: str = SPEC_VERSION) -> dict[str, Any]:
    """The spec's ``technologies`` entry of ``method`` (empty for a method the spec does not define)."""
    entry = (load_spec_tables(version).get("technologies") or {}).get(str(method))
    return dict(entry) if isinstance(entry, dict) else {}


def robustness_table(method: str, family: str | None, task: str, version: str = SPEC_VERSION) -> str | None:
    """The NNW-TEC robustness table (Tables 4-21) that ``method`` against ``family`` on ``task`` reproduces."""
    for num, t in _tables(version):
        if (t.get("property") == "robustness" and t.get("method") == method and t.get("modification") == family
                and t.get("model") in (None, task)):
            return num
    return None


def imperceptibility_table(method: str, classification: bool, version: str = SPEC_VERSION) -> str | None:
    """The NNW-TEC imperceptibility table of ``method``: its classification table (Tables 2, 12, 17),
    else the table of the other tasks (Table 3, which has a ``task`` column)."""
    for num, t in _tables(version):
        if t.get("property") != "imperceptibility" or not t.get("method"):
            continue
        if classification and t.get("method") == method and "task" not in t["columns"]:
            return num
        if not classification and "task" in t["columns"]:
            return num
    return None


def cost_clause(method: str, version: str = SPEC_VERSION) -> str:
    """The clause of a method's computational cost: its NNW-TEC section, else the NNW-NNT procedure."""
    section = technology(method, version).get("cost_section")
    return f"NNW-TEC §{section} Computational cost" if section else "NNW-NNT Computational cost"


def imperceptibility_clause(method: str, version: str = SPEC_VERSION) -> str:
    """The clause of a method's imperceptibility: its NNW-TEC section, else the NNW-NNT procedure."""
    section = technology(method, version).get("imperceptibility_section")
    return f"NNW-TEC §{section}" if section else "NNW-NNT Imperceptibility"


def robustness_clause(method: str, version: str = SPEC_VERSION) -> str:
    """The clause of a method's robustness: its NNW-TEC section, else the NNW-NNT procedure."""
    section = technology(method, version).get("robustness_section")
    return f"NNW-TEC §{section}" if section else "NNW-NNT Robustness"


def detection_criterion(method: str, version: str = SPEC_VERSION) -> str:
    """The detection criterion a robustness clause states for ``method`` (the spec's rule in words),
    else the method's own detector."""
    return technology(method, version).get("detection_criterion") or "the method's own detector"


def detection_figure(method: str | None, version: str = SPEC_VERSION) -> dict[str, Any] | None:
    """How the spec's tables print ``method``'s detection (label, how to read it, published column)."""
    return technology(method, version).get("detection_figure")


def insertion_time_figure(method: str, version: str = SPEC_VERSION) -> dict[str, Any] | None:
    """The figure of insertion time against a key parameter (NNW-TEC Figure 5), when the spec has one."""
    return technology(method, version).get("insertion_time_figure")


def detection_complexity(method: str, version: str = SPEC_VERSION) -> str | None:
    """The bound the spec sets on the growth of the detection time (``"n log n"``, §7.2.7), if any."""
    return technology(method, version).get("detection_complexity")


__all__ = ["technology", "robustness_table", "imperceptibility_table", "cost_clause", "imperceptibility_clause",
           "robustness_clause", "detection_criterion", "detection_figure",
           "insertion_time_figure", "detection_complexity"]
