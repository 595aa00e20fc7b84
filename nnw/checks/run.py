"""One clause of a case, and a whole certification without pytest (scikit-learn's ``check_estimator``).

:func:`check_case` dispatches a :class:`nnw.cases.Case` to its check with the profile's parameters;
the conformance tests (``conformance/test_*.py``) are thin wrappers of it. :func:`check_method`
runs every case of the profile for one method and returns the certificate.
"""
from __future__ import annotations

from typing import Any, Mapping

from nnw.checks.result import FAIL, KNOWN_FAILURE, ClauseResult

#: property -> (conformance test file, test function): the node id a clause is reported under
TESTS = {
    "imperceptibility": ("test_imperceptibility.py", "test_imperceptibility"),
    "robustness": ("test_robustness.py", "test_robustness"),
    "false_alarms": ("test_false_alarms.py", "test_false_alarms"),
    "cross_actor": ("test_false_alarms.py", "test_cross_actor"),
    "overwriting": ("test_overwriting.py", "test_overwriting"),
    "fingerprint_unicity": ("test_fingerprinting.py", "test_fingerprint_unicity"),
    "fingerprint_robustness": ("test_fingerprinting.py", "test_fingerprint_robustness"),
    "integrity": ("test_integrity.py", "test_integrity"),
}


def nodeid(case) -> str:
    file, function = TESTS[case.property]
    return f"conformance/{file}::{function}[{case.id}]"


def check_case(zoo, methods: Mapping[str, Any], case) -> ClauseResult:
    """The clause of ``case`` evaluated on ``zoo`` (its profile gives every parameter)."""
    from nnw.cases import family_size

    p, method, prop = zoo.profile, methods[case.method], case.property
    mod = case_modification(case)
    if prop == "imperceptibility":
        from nnw.checks.imperceptibility import check_imperceptibility

        robust = p.method_grid(case.method, "robustness")
        in_robust = all(case.config_dict.get(k) in v for k, v in robust.items())
        # classification, robustness configurations: the whole population, shared with robustness
        # and false alarms; the rest of the classification grid: one marked version per model seed
        # (M pairs); the other tasks, judged on imperceptibility alone: their whole population, and
        # no null reads (no false-alarm clause reads them)
        if p.tasks[case.task]["task"] != "classification":
            key_seeds = p.key_seeds_of(case.task)
        else:
            key_seeds = None if in_robust else p.key_seeds_of(case.task)[:1]
        return check_imperceptibility(zoo, method, case.task, case.config_dict, key_seeds=key_seeds,
                                      table=case.table)
    if prop == "robustness":
        from nnw.checks.robustness import check_robustness

        return check_robustness(zoo, method, case.task, case.config_dict, mod,
                                tolerance=p.thresholds["useful_error_tolerance"],
                                clauses_in_family=family_size(p, method, "robustness"), table=case.table)
    if prop == "false_alarms":
        from nnw.checks.negative import check_false_alarms

        return check_false_alarms(zoo, method, case.task, case.config_dict, mod,
                                  clauses_in_family=family_size(p, method, "false_alarms"))
    if prop == "cross_actor":
        from nnw.checks.negative import check_cross_actor

        return check_cross_actor(zoo, method, case.task, case.config_dict,
                                 clauses_in_family=family_size(p, method, "cross_actor"))
    if prop == "overwriting":
        from nnw.checks.overwriting import check_overwriting

        grid = p.data["methods"][case.method]["overwriting"]
        cfg = {k: v for k, v in case.config_dict.items() if k != "alpha"}
        return check_overwriting(zoo, method, case.task, cfg, overlaps=grid["overlaps"],
                                 marks=grid.get("marks", 5), max_overlap=grid.get("max_overlap", 0.5))
    if prop == "fingerprint_unicity":
        from nnw.checks.fingerprinting import check_fingerprint_unicity

        return check_fingerprint_unicity(zoo, method, case.task, case.config_dict,
                                         model_seeds=p.model_seeds_of(case.task), key_seeds=p.key_seeds_of(case.task), nominal=p.decisions["nominal_false_alarm_rate"],
                                         clauses_in_family=family_size(p, method, prop))
    if prop == "fingerprint_robustness":
        from nnw.checks.fingerprinting import check_fingerprint_robustness

        return check_fingerprint_robustness(zoo, method, case.task, case.config_dict, mod,
                                            model_seeds=p.model_seeds_of(case.task), key_seeds=p.key_seeds_of(case.task),
                                            tolerance=p.thresholds["useful_error_tolerance"],
                                            clauses_in_family=family_size(p, method, prop))
    if prop == "integrity":
        from nnw.checks.integrity import check_integrity

        return check_integrity(zoo, method, case.task, case.config_dict, mod, model_seeds=p.model_seeds_of(case.task),
                               key_seeds=p.key_seeds_of(case.task), clauses_in_family=family_size(p, method, prop))
    raise ValueError(f"no check for the property {prop!r}")


def case_modification(case):
    """The Modification object of ``case`` (None when unmodified): its canonical name, as the case
    holds it, built by the one constructor of Modifications from names."""
    from nnw.modifications import parse_modification

    return None if case.modification is None else parse_modification(case.modification)


def clause_record(result: ClauseResult, case) -> dict[str, Any]:
    """The certificate's record of one clause: the result plus the case's fields, the Modification's
    family and Parameter values among them (:func:`nnw.checks.result.modification_fields`; never
    parsed back)."""
    from nnw.checks.result import modification_fields
    from nnw.clauses import clause_id

    data = result.as_dict()
    data.update(method=case.method, task=case.task, config=case.config_dict, property=case.property,
                **modification_fields(case_modification(case)),
                clause_id=clause_id(case.property, case.modification))
    return data


def check_method(method, profile="embedded", *, cache_dir=None, device: str = "cpu", data_root=None,
                 select=None, deviations=(), zoo=None) -> dict[str, Any]:
    """Certify ``method`` (an object or a registered name) on ``profile`` without pytest.

    ``select(case) -> bool`` keeps a subset (the grade is then "incomplete"); ``deviations`` are
    :class:`nnw.deviations.Deviation` entries (the built-in methods' own always apply); ``zoo``
    replaces the model zoo (tests). Returns the certificate (validated against its schema).
    """
    import json

    import torch

    from nnw.cache import ModelCache
    from nnw.cases import build_cases
    from nnw.certificate import build_certificate, strict_json, validate
    from nnw.deviations import builtin
    from nnw.methods.registry import get_method
    from nnw.profile import load_profile
    from nnw.zoo import Zoo

    method = get_method(method) if isinstance(method, str) else method
    profile = load_profile(profile) if isinstance(profile, str) else profile
    zoo = zoo or Zoo(profile, ModelCache(cache_dir), torch.device(device), data_root)
    declared = list(builtin([method])) + list(deviations)
    records = []
    for cases in build_cases(profile, [method]).values():
        for case in cases:
            if select is not None and not select(case):
                continue
            data = clause_record(check_case(zoo, {method.name: method}, case), case)
            data["nodeid"] = nodeid(case)
            match = next((d for d in declared if d.matches(data["nodeid"])), None)
            if match is not None:
                data["deviation"] = {"method": match.method, "prefix": match.prefix, "reason": match.reason,
                                     "source": match.source}
                if data["verdict"] == FAIL:
                    data["verdict"] = KNOWN_FAILURE
            records.append(json.loads(json.dumps(data, default=str)))
    cert = strict_json(build_certificate(profile, [method], device, records))
    validate(cert)
    return cert
