"""Imperceptibility — NNW-TEC §7.2.5 (Tables 2, 3), §7.3.4 (Table 12), §7.4.4 (Table 17): the marked
population against the unmarked one, non-inferiority. Rule: nnw/checks/imperceptibility.py."""
from nnw.checks.run import check_case


def test_imperceptibility(imperceptibility_case, nnw_zoo, nnw_methods, record_clause):
    record_clause(check_case(nnw_zoo, nnw_methods, imperceptibility_case))
