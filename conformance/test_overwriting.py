"""Watermark Overwriting by five Actors — NNW-TEC §7.2.6, Figure 4."""
from nnw.checks.run import check_case


def test_overwriting(overwriting_case, nnw_zoo, nnw_methods, record_clause):
    record_clause(check_case(nnw_zoo, nnw_methods, overwriting_case))
