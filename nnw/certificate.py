"""The machine-readable certificate of a conformance run (schema: nnw/schemas/certificate.schema.json).

Written once, by the xdist controller (or the only process), validated against its schema when
written. Its content is independent of the number of xdist workers: clauses are sorted by node
id and no timings or timestamps are stored.
"""
from __future__ import annotations

import hashlib
import json
import math
import platform
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from nnw.methods.identity import source_digest

SCHEMA_VERSION = "1"


def schema() -> dict[str, Any]:
    return json.loads(resources.files("nnw.schemas").joinpath("certificate.schema.json").read_text())


def validate(cert: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` when ``cert`` does not follow the published schema."""
    import jsonschema

    jsonschema.validate(cert, schema())


def _method_info(method) -> dict[str, Any]:
    tags = {k: (sorted(v) if isinstance(v, (set, frozenset)) else v) for k, v in vars(method.tags).items()}
    from nnw.cases import is_active

    return {"name": method.name, "version": str(getattr(method, "version", "0")),
            "sha256": source_digest(method), "origin": f"{type(method).__module__}:{type(method).__qualname__}",
            "tags": tags, "certified_kind": "active" if is_active(method) else "passive"}


CONFORMANT, WITH_DEVIATIONS, NOT_CONFORMANT, INCOMPLETE = (
    "conformant", "conformant with declared deviations", "not conformant", "incomplete")
# pytest's own statuses: 0 all passed, 1 tests failed; 6 is the suite's "incomplete"
EXIT_STATUS = {CONFORMANT: 0, WITH_DEVIATIONS: 0, NOT_CONFORMANT: 1, INCOMPLETE: 6}


def grade(clauses: list[dict[str, Any]], missing: list[str] = (), *, policy_changes: list[str] = (),
          unmatched_deviations: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """The certificate's grade: "not conformant" when any clause failed; "incomplete" when any clause
    could not be decided (inconclusive; not assessed, unless its family was decided at another value
    of its grid: ``beyond_useful_range``), a mandatory clause of the registry was not
    evaluated (``missing``, from :func:`nnw.clauses.coverage`), the profile changed one of the
    suite's policies (``policy_changes``: its rules are not the suite's), or a declared deviation
    did not occur (its clause passed, or it matched no clause: as pytest's strict xfail, the
    declaration must be corrected); "conformant with declared deviations" when declared known
    failures remain; else "conformant"."""
    verdicts = Counter(c["verdict"] for c in clauses)
    deviations = [{"clause": c.get("clause"), "nodeid": c.get("nodeid"), "method": c.get("method"),
                   "reason": (c.get("deviation") or {}).get("reason", "declared known failure"),
                   "source": (c.get("deviation") or {}).get("source")}
                  for c in clauses if c["verdict"] == "known failure"]
    passing = [{"nodeid": c.get("nodeid"), "source": c["deviation"].get("source")}
               for c in clauses if c.get("deviation") and c["verdict"] == "pass"]
    # a value of a Modification grid where no Modified model stayed useful is "not assessed"; it never
    # passes, and it leaves the grade incomplete unless the same family was decided at another value
    # of the grid on the same population (the value lies beyond the useful range, as the spec's own
    # tables have such values)
    def family(c):  # the same clause of the same Modification family (fingerprint robustness has one clause
        # id for every family: without the family, a decided noise clause would excuse undecided distillation)
        return (c.get("method"), c.get("task"), json.dumps(c.get("config"), sort_keys=True), c.get("clause_id"),
                c.get("modification_family"))

    decided = {family(c) for c in clauses if c["verdict"] in ("pass", "fail", "known failure")}
    beyond = [c.get("nodeid") for c in clauses if c["verdict"] == "not assessed" and family(c) in decided]
    undecided = [c.get("nodeid") for c in clauses if c["verdict"] == "inconclusive"
                 or (c["verdict"] == "not assessed" and family(c) not in decided)]
    reasons = ([f"{len(undecided)} clause(s) undecided"] if undecided else []) + \
        ([f"{len(missing)} mandatory clause(s) not evaluated"] if missing else []) + \
        ([f"the profile changes the suite's policies: {'; '.join(policy_changes)}"] if policy_changes else []) + \
        ([f"{len(passing)} declared deviation(s) whose clause passed"] if passing else []) + \
        ([f"{len(unmatched_deviations)} declared deviation(s) matching no clause"] if unmatched_deviations else [])
    if verdicts.get("fail"):
        g = NOT_CONFORMANT
    elif reasons:
        g = INCOMPLETE
    elif verdicts.get("known failure"):
        g = WITH_DEVIATIONS
    else:
        g = CONFORMANT
    return {"grade": g, "exit_status": EXIT_STATUS[g], "grade_reasons": reasons, "deviations": deviations,
            "undecided": undecided, "beyond_useful_range": beyond, "passing_deviations": passing, "unmatched_deviations": list(unmatched_deviations),
            "policy_changes": list(policy_changes), "not_evaluated": list(missing)}


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None: the certificate is strict JSON
    (RFC 8259 has no NaN or Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    return value


def build_certificate(profile, methods: Iterable, device: str, clauses: list[dict[str, Any]],
                      unmatched_deviations: list[dict[str, Any]] = ()) -> dict[str, Any]:
    import torch

    import nnw

    from nnw.clauses import clause_id, coverage, missing_mandatory

    clauses = sorted(clauses, key=lambda c: c["nodeid"])
    for c in clauses:  # self-describing: the registry id beside method, task, Modification and value
        c.setdefault("clause_id", clause_id(c.get("property", ""), c.get("modification")))
    counts = Counter(c["verdict"] for c in clauses)
    infos = [_method_info(m) for m in methods]
    cov = coverage(infos, clauses)
    return {
        "schema_version": SCHEMA_VERSION,
        "spec_version": nnw.SPEC_VERSION,
        "suite": {"name": "nnw-conformance", "version": nnw.__version__},
        "profile": {"name": profile.name, "source": profile.source,
                    "sha256": hashlib.sha256(json.dumps(profile.data, sort_keys=True).encode()).hexdigest()},
        "methods": infos,
        "environment": {"python": platform.python_version(), "torch": torch.__version__, "device": device},
        "seeds": {"model_seeds": profile.model_seeds, "key_seeds": profile.key_seeds,
                  **({"tasks": own} if (own := {t: {"model_seeds": profile.model_seeds_of(t), "key_seeds": profile.key_seeds_of(t)}
                                               for t in profile.tasks if "population" in profile.tasks[t]}) else {})},
        "summary": {"verdict": "fail" if counts.get("fail") else "pass" if set(counts) <= {"pass", "not applicable",
                    "known failure"} else "incomplete", "counts": dict(sorted(counts.items())),
                    **grade(clauses, missing_mandatory(cov), policy_changes=profile.policy_changes(),
                            unmatched_deviations=unmatched_deviations)},
        "coverage": cov,
        "clauses": clauses,
    }


def write_certificate(config, clauses: list[dict[str, Any]], unmatched_deviations=()) -> tuple[Path, dict[str, Any]]:
    from nnw.device import resolve_device
    from nnw.methods.registry import BUILTINS, get_method
    from nnw.profile import load_profile

    profile = load_profile(config.getoption("--nnw-profile"))
    names = config.getoption("--nnw-method") or list(BUILTINS)
    used = {c["method"] for c in clauses}
    methods = [m for m in (get_method(n) for n in names) if m.name in used]
    unmatched = [d for d in unmatched_deviations if not d["source"].startswith("nnw/methods/")]
    cert = build_certificate(profile, methods, str(resolve_device(config.getoption("--nnw-device")).type), clauses,
                             unmatched)
    from nnw.cases import build_cases

    for info, method in zip(cert["methods"], methods):  # clauses the method's tags exclude (ONNX-style "not applicable")
        cases = build_cases(profile, [method])
        info["not_applicable"] = sorted(prop for prop, items in cases.items() if not items)
    for d in cert["summary"]["deviations"]:  # clause, reason, method and its version
        d["method_version"] = next((m["version"] for m in cert["methods"] if m["name"] == d["method"]), None)
    cert = strict_json(cert)
    validate(cert)
    path = Path(config.getoption("--nnw-certificate"))
    if not path.is_absolute():  # relative to where pytest was invoked, like --nnw-xfails-file
        path = Path(config.invocation_params.dir) / path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(dumps(cert))
    tmp.replace(path)
    return path, cert


def dumps(cert: dict[str, Any]) -> str:
    """The certificate as JSON text: indented down to the clauses, then one line per clause (rows
    included). Fully indented, the text of a run's 12 MB of rows takes seconds to encode."""
    clauses = cert.get("clauses")
    if not isinstance(clauses, list) or list(cert)[-1] != "clauses":
        return json.dumps(cert, indent=1, allow_nan=False) + "\n"
    head = json.dumps({k: v for k, v in cert.items() if k != "clauses"}, indent=1, allow_nan=False)
    body = ",\n  ".join(json.dumps(c, allow_nan=False) for c in clauses)
    return head[:-2] + ',\n "clauses": [' + (f"\n  {body}\n ]" if clauses else "]") + "\n}\n"
