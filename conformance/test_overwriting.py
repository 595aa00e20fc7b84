"""Watermark Overwriting by five Actors — NNW-TEC §7.2.6, Figure 4."""
from nnw.checks.overwriting import check_overwriting


def test_overwriting(overwriting_case, nnw_zoo, nnw_profile, nnw_methods, record_clause):
    c, p = overwriting_case, nnw_profile
    grid = p.data["methods"][c.method]["overwriting"]
    cfg = {k: v for k, v in c.config_dict.items() if k != "alpha"}
    record_clause(check_overwriting(nnw_zoo, nnw_methods[c.method], c.task, cfg, overlaps=grid["overlaps"],
                                    marks=grid.get("marks", 5), max_overlap=grid.get("max_overlap", 0.5)))
