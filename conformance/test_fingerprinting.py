"""Fingerprinting — NNW-TEC §5.3 (Unicity, Robustness, matching against a database; NCT passive mode)."""
from nnw.checks.fingerprinting import check_fingerprint_robustness, check_fingerprint_unicity
from nnw.modifications import parse_modification


def test_fingerprint_unicity(fingerprint_unicity_case, nnw_zoo, nnw_profile, nnw_methods, record_clause):
    c, p = fingerprint_unicity_case, nnw_profile
    record_clause(check_fingerprint_unicity(nnw_zoo, nnw_methods[c.method], c.task, c.config_dict,
                                            model_seeds=p.model_seeds, key_seeds=p.key_seeds,
                                            nominal=p.thresholds["false_alarm_alpha"]))


def test_fingerprint_robustness(fingerprint_robustness_case, nnw_zoo, nnw_profile, nnw_methods, record_clause):
    c, p = fingerprint_robustness_case, nnw_profile
    record_clause(check_fingerprint_robustness(nnw_zoo, nnw_methods[c.method], c.task, c.config_dict,
                                               parse_modification(c.modification), model_seeds=p.model_seeds,
                                               tolerance=p.thresholds["useful_error_tolerance"]))
