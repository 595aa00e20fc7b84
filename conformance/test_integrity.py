"""Integrity verification — NNW-TEC §3 "Algorithmic Integrity"; IEEE 3304 use case "verify the
integrity of an NN": intact when unmodified, modified after every Modification at its weakest value."""
from nnw.checks.run import check_case


def test_integrity(integrity_case, nnw_zoo, nnw_methods, record_clause):
    record_clause(check_case(nnw_zoo, nnw_methods, integrity_case))
