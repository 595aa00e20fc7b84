"""Imperceptibility — NNW-TEC §7.2.5 (Tables 2, 3), §7.3.4 (Table 12), §7.4.4 (Table 17)."""
from nnw.checks.imperceptibility import check_imperceptibility


def test_imperceptibility(imperceptibility_case, nnw_zoo, nnw_profile, nnw_methods, record_clause):
    c, p = imperceptibility_case, nnw_profile
    robust_cfgs = p.method_grid(c.method, "robustness")
    in_robust = all(c.config_dict.get(k) in v for k, v in robust_cfgs.items())
    # Key independence on the robustness configuration (its D marked models are shared with
    # the robustness tests); one key for the rest of the grid.
    keys = p.key_seeds if in_robust else p.key_seeds[:1]
    record_clause(check_imperceptibility(nnw_zoo, nnw_methods[c.method], c.task, c.config_dict, key_seeds=keys,
                                         model_seeds=p.model_seeds, bound_percent=p.thresholds["impact_bound_percent"],
                                         table=c.table))
