"""Robustness — NNW-TEC §7.2.6 (Tables 4–11), §7.3.5 (Tables 13–16), §7.4.5 (Tables 18–21),
and the NNW-NNT Modification table (random pruning, distillation, overwriting), on the population
of M model seeds × D marked versions. Rule: nnw/checks/robustness.py."""
from nnw.checks.run import check_case


def test_robustness(robustness_case, nnw_zoo, nnw_methods, record_clause):
    record_clause(check_case(nnw_zoo, nnw_methods, robustness_case))
