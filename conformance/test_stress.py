"""Adversarial stress beyond the standard (marker ``stress``; deselected by default, run with
``pytest conformance -m stress``): removal attacks the literature uses — function-preserving
transformations, fine-pruning, extraction from out-of-distribution queries, query-time input
transformations, refusal of out-of-distribution queries — and false claims with crafted keys.
Reported in the certificate's separate "stress" section, never as conformance verdicts; a test
fails only when a method's claimed invariance does not hold (see nnw.checks.stress)."""
import pytest

from nnw.checks.stress import check_attack, check_false_claims
from nnw.modifications import parse_modification
from nnw.stress import grid, key_seeds, parametrize, record

pytestmark = pytest.mark.stress


def pytest_generate_tests(metafunc):
    parametrize(metafunc)


def test_stress_attack(stress_case, nnw_zoo, nnw_profile, nnw_methods, request):
    c = stress_case
    attack = parse_modification(c.attack)
    record(request, check_attack(nnw_zoo, nnw_methods[c.method], c.task, c.config_dict, attack,
                                 key_seeds=key_seeds(nnw_profile, attack),
                                 max_drop_points=float(grid(nnw_profile).get("max_accuracy_drop_points", 5.0))))


def test_false_claim(false_claim_case, nnw_zoo, nnw_profile, nnw_methods, request):
    c, fc = false_claim_case, grid(nnw_profile)["false_claims"]
    record(request, *check_false_claims(nnw_zoo, nnw_methods[c.method], c.task, c.config_dict,
                                        surrogate_seeds=[int(s) for s in fc["surrogate_seeds"]],
                                        model_seeds=nnw_profile.model_seeds, keys=int(fc["keys"]),
                                        eps=list(fc["eps"]), steps=int(fc["steps"]),
                                        momentum=float(fc.get("momentum", 1.0)),
                                        diversity=float(fc.get("diversity", 0.0))))
