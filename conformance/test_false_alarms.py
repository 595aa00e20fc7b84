"""Negative controls — IEEE 3304 false alarm rate on the calibrated null (M never-marked models ×
``null_keys`` Keys of other Actors), and cross-Actor interference (marked models read with other
Actors' Keys). Rules: nnw/checks/negative.py."""
from nnw.checks.run import check_case


def test_false_alarms(false_alarm_case, nnw_zoo, nnw_methods, record_clause):
    record_clause(check_case(nnw_zoo, nnw_methods, false_alarm_case))


def test_cross_actor(cross_actor_case, nnw_zoo, nnw_methods, record_clause):
    record_clause(check_case(nnw_zoo, nnw_methods, cross_actor_case))
