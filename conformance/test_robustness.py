"""Robustness — NNW-TEC §7.2.6 (Tables 4–11), §7.3.5 (Tables 13–16), §7.4.5 (Tables 18–21),
and the NNW-NNT Modification table (random pruning, distillation, overwriting), on the population
of M model seeds × D marked versions. Rule: nnw/checks/robustness.py."""
from nnw.cases import family_size
from nnw.checks.robustness import check_robustness
from nnw.modifications import parse_modification


def test_robustness(robustness_case, nnw_zoo, nnw_profile, nnw_methods, record_clause):
    c, p = robustness_case, nnw_profile
    method = nnw_methods[c.method]
    record_clause(check_robustness(nnw_zoo, method, c.task, c.config_dict, parse_modification(c.modification),
                                   tolerance=p.thresholds["useful_error_tolerance"],
                                   clauses_in_family=family_size(p, method, "robustness"), table=c.table))
