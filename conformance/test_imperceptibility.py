"""Imperceptibility — NNW-TEC §7.2.5 (Tables 2, 3), §7.3.4 (Table 12), §7.4.4 (Table 17): the marked
population against the unmarked one, non-inferiority. Rule: nnw/checks/imperceptibility.py."""
from nnw.checks.imperceptibility import check_imperceptibility


def test_imperceptibility(imperceptibility_case, nnw_zoo, nnw_profile, nnw_methods, record_clause):
    c, p = imperceptibility_case, nnw_profile
    robust_cfgs = p.method_grid(c.method, "robustness")
    in_robust = all(c.config_dict.get(k) in v for k, v in robust_cfgs.items())
    # The robustness configurations use the whole population (M × D, shared with the robustness and
    # false-alarm clauses); the rest of the grid one marked version per model seed (M pairs).
    keys = None if in_robust else p.key_seeds[:1]
    record_clause(check_imperceptibility(nnw_zoo, nnw_methods[c.method], c.task, c.config_dict, key_seeds=keys,
                                         table=c.table))
