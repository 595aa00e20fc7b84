"""Fingerprinting — NNW-TEC §5.3 (Unicity, Robustness, matching against a database; NCT passive mode)."""
from nnw.checks.run import check_case


def test_fingerprint_unicity(fingerprint_unicity_case, nnw_zoo, nnw_methods, record_clause):
    record_clause(check_case(nnw_zoo, nnw_methods, fingerprint_unicity_case))


def test_fingerprint_robustness(fingerprint_robustness_case, nnw_zoo, nnw_methods, record_clause):
    record_clause(check_case(nnw_zoo, nnw_methods, fingerprint_robustness_case))
