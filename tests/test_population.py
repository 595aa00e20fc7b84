"""A task's own population (M model seeds × D key seeds) in the profile: NNW-NNT's design, set per task.

A task judged on imperceptibility alone (segmentation, up-sampling, generation) may need more model
seeds than D keys per seed: its verdict compares independent trainings, whose spread falls with M.
"""
from __future__ import annotations

import copy

from nnw.profile import Profile, load_profile


def _profile(**population) -> Profile:
    data = copy.deepcopy(load_profile("embedded").data)
    if population:
        data["tasks"]["RDN"]["population"] = population
    return Profile(name="t", data=data, source="<test>")


def test_a_task_without_its_own_population_uses_the_profiles():
    p = _profile()
    for task in p.tasks:
        if "population" not in p.tasks[task]:
            assert p.model_seeds_of(task) == p.model_seeds
            assert p.key_seeds_of(task) == p.key_seeds


def test_a_tasks_population_overrides_m_and_d_for_that_task_only():
    p = _profile(model_seeds=[0, 1, 2, 3, 4, 5], key_seeds=[0])
    assert p.model_seeds_of("RDN") == [0, 1, 2, 3, 4, 5]
    assert p.key_seeds_of("RDN") == [0]
    assert p.model_seeds_of("ResNet8") == p.model_seeds
    assert p.key_seeds_of("ResNet8") == p.key_seeds


def test_a_population_may_set_m_alone():
    p = _profile(model_seeds=[0, 1, 2, 3])
    assert p.model_seeds_of("RDN") == [0, 1, 2, 3]
    assert p.key_seeds_of("RDN") == p.key_seeds


def test_the_report_names_each_tasks_own_population():
    from nnw.report import _header

    cert = {"summary": {"verdict": "pass", "counts": {"pass": 1}}, "methods": [], "spec_version": "1",
            "schema_version": "1", "suite": {"name": "nnw", "version": "0"}, "profile": {"name": "t", "source": "x"},
            "environment": {}, "seeds": {"model_seeds": [0, 1, 2], "key_seeds": [0, 1, 2],
                                         "tasks": {"DeepLabV3": {"model_seeds": [0, 1, 2, 3, 4, 5], "key_seeds": [0]}}}}
    seeds = next(line for line in _header(cert) if "seeds" in line)
    assert "DeepLabV3: models 0 / 1 / 2 / 3 / 4 / 5, keys 0" in seeds
