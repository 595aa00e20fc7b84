"""Negative controls — IEEE 3304 false alarm rate on the calibrated null (M never-marked models ×
``null_keys`` Keys of other Actors), and cross-Actor interference (marked models read with other
Actors' Keys). Rules: nnw/checks/negative.py."""
from nnw.cases import family_size
from nnw.checks.negative import check_cross_actor, check_false_alarms
from nnw.modifications import parse_modification


def test_false_alarms(false_alarm_case, nnw_zoo, nnw_profile, nnw_methods, record_clause):
    c = false_alarm_case
    method = nnw_methods[c.method]
    mod = None if c.modification is None else parse_modification(c.modification)
    record_clause(check_false_alarms(nnw_zoo, method, c.task, c.config_dict, mod,
                                     clauses_in_family=family_size(nnw_profile, method, "false_alarms")))


def test_cross_actor(cross_actor_case, nnw_zoo, nnw_profile, nnw_methods, record_clause):
    c = cross_actor_case
    method = nnw_methods[c.method]
    record_clause(check_cross_actor(nnw_zoo, method, c.task, c.config_dict,
                                    clauses_in_family=family_size(nnw_profile, method, "cross_actor")))
