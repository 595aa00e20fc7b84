"""Negative controls — IEEE 3304 false alarm rate; NNW-NNT: M unmarked models x (D + 1) payloads."""
from nnw.checks.negative import check_false_alarms
from nnw.modifications import parse_modification


def test_false_alarms(false_alarm_case, nnw_zoo, nnw_profile, nnw_methods, record_clause):
    c, p = false_alarm_case, nnw_profile
    mod = None if c.modification is None else parse_modification(c.modification)
    record_clause(check_false_alarms(nnw_zoo, nnw_methods[c.method], c.task, c.config_dict, mod,
                                     key_seeds=p.key_seeds, model_seeds=p.model_seeds,
                                     nominal=p.thresholds["false_alarm_alpha"]))
