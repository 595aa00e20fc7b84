"""Robustness — NNW-TEC §7.2.6 (Tables 4–11), §7.3.5 (Tables 13–16), §7.4.5 (Tables 18–21),
and the NNW-NNT Modification table (random pruning, distillation, overwriting)."""
from nnw.checks.robustness import check_robustness
from nnw.modifications import parse_modification


def test_robustness(robustness_case, nnw_zoo, nnw_profile, nnw_methods, record_clause):
    c, p = robustness_case, nnw_profile
    record_clause(check_robustness(nnw_zoo, nnw_methods[c.method], c.task, c.config_dict,
                                   parse_modification(c.modification), key_seeds=p.key_seeds,
                                   tolerance=p.thresholds["useful_error_tolerance"], table=c.table))
