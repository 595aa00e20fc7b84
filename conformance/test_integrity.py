"""Integrity verification — NNW-TEC §3 "Algorithmic Integrity"; IEEE 3304 use case "verify the
integrity of an NN": intact when unmodified, modified after every Modification at its weakest value."""
from nnw.checks.integrity import check_integrity
from nnw.modifications import parse_modification


def test_integrity(integrity_case, nnw_zoo, nnw_profile, nnw_methods, record_clause):
    c, p = integrity_case, nnw_profile
    mod = None if c.modification is None else parse_modification(c.modification)
    record_clause(check_integrity(nnw_zoo, nnw_methods[c.method], c.task, c.config_dict, mod,
                                  model_seeds=p.model_seeds, key_seeds=p.key_seeds))
