"""Tests of nnw.cases.build_cases: ids, grids, tag-based applicability and xdist groups.

Pure data: no model is built or trained (build_cases only reads the profile and the methods' tags).
"""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest

from nnw.cases import build_cases
from nnw.methods.base import Tags
from nnw.methods.registry import get_method
from nnw.modifications import parse_modification
from nnw.profile import load_profile

TINY = str(Path(__file__).parents[1] / "fixtures" / "profiles" / "tiny.json")
PROPERTIES = ("imperceptibility", "robustness", "false_alarms", "overwriting", "fingerprint_unicity",
              "fingerprint_robustness", "integrity")
#: Cases that read only the unmarked models, through a fingerprint key.
FINGERPRINT_PROPERTIES = ("fingerprint_unicity", "fingerprint_robustness", "integrity")
#: Cases that read marked models (``zoo.marked(task, method, config, ...)``).
MARKED_PROPERTIES = ("imperceptibility", "robustness", "false_alarms")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def _methods():
    return [get_method(n) for n in ("NCT", "RTW", "TBW")]


@pytest.fixture(scope="module")
def methods():
    return _methods()


@pytest.fixture(scope="module", params=["embedded", "spec"])
def profile(request):
    return load_profile(request.param)


@pytest.fixture(scope="module")
def cases(profile, methods):
    return build_cases(profile, methods)


def _ids(cases, prop, method=None):
    return [c.id for c in cases[prop] if method is None or c.method == method]


# -- ids -----------------------------------------------------------------------------------------
def test_every_property_is_present(cases):
    assert set(cases) >= set(PROPERTIES)
    assert all(cases[p] for p in PROPERTIES), {p: len(v) for p, v in cases.items()}
    # the plugin parametrizes one test function per property
    from nnw.pytest_plugin import CASE_FIXTURES

    assert set(CASE_FIXTURES.values()) == set(cases)


def test_ids_are_unique_within_each_test_function(cases):
    for prop, items in cases.items():
        ids = [c.id for c in items]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        assert not dupes, f"{prop}: duplicate ids {dupes[:5]}"


def test_ids_are_deterministic(profile, methods, cases):
    # a second build, with fresh method instances, gives the same ordered ids and groups
    again = build_cases(profile, _methods())
    assert list(again) == list(cases)
    for prop in cases:
        assert [(c.id, c.group) for c in again[prop]] == [(c.id, c.group) for c in cases[prop]], prop
        assert again[prop] == cases[prop], prop  # Case is a frozen dataclass: full equality


def test_ids_are_readable(cases):
    for prop, items in cases.items():
        for c in items:
            assert ID_RE.match(c.id), (prop, c.id)
            assert "0x" not in c.id and " " not in c.id, (prop, c.id)  # no reprs / memory addresses
            assert c.id.startswith(f"{c.method}-{c.task}"), (prop, c.id)
            if c.modification is not None:
                assert c.id.endswith(parse_modification(c.modification).id), (prop, c.id, c.modification)


def test_embedded_profile_ids():
    cases = build_cases(load_profile("embedded"), _methods())
    rob = _ids(cases, "robustness")
    assert "NCT-ResNet8-alpha5-pruning-P50" in rob
    assert "NCT-VGG16-alpha0-noise-S0.01" in rob
    assert "RTW-ResNet8-quantization-B8" in rob
    assert "TBW-VGG16-finetuning-E1" in rob
    assert "NCT-ResNet8-alpha5-unmodified" in _ids(cases, "false_alarms")
    assert "NCT-ResNet8-alpha0" in _ids(cases, "imperceptibility")  # N = 512 only: ids name what varies
    assert _ids(cases, "overwriting") == ["NCT-ResNet8-overwriting", "NCT-VGG16-overwriting"]
    assert "NCT-ResNet8" in _ids(cases, "fingerprint_unicity")


def test_tiny_profile_ids():
    cases = build_cases(load_profile(TINY), _methods())
    assert "NCT-ResNet8-alpha0-pruning-P50" in _ids(cases, "robustness")
    assert "NCT-ResNet8-alpha2-noise-S0.01" in _ids(cases, "robustness")


# -- the NNW-TEC grids of the spec profile ------------------------------------------------------
SPEC_GRIDS = {
    "noise": ("S", {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1}),
    "finetuning": ("E", {1, 3, 5, 7, 10}),
    "quantization": ("B", {16, 8, 6, 4, 2}),
    "pruning": ("P", {10, 20, 50, 80, 90}),
    "random_pruning": ("P", {1, 5, 10}),
}


def _grid_of(cases, method, task, alpha=None):
    """{family: {parameter values}} over the robustness cases of (method, task[, alpha])."""
    out = defaultdict(set)
    for c in cases["robustness"]:
        if c.method == method and c.task == task and (alpha is None or c.config_dict.get("alpha") == alpha):
            mod = parse_modification(c.modification)
            param, _ = SPEC_GRIDS.get(mod.family, (None, None))
            if param is not None:
                out[mod.family].add(mod.params[param])
    return out


@pytest.mark.parametrize("task", ["ResNet8", "VGG16"])
def test_spec_profile_nct_robustness_grid(task):
    cases = build_cases(load_profile("spec"), _methods())
    alphas = {c.config_dict["alpha"] for c in cases["robustness"] if c.method == "NCT" and c.task == task}
    assert alphas == {0, 5, 50, 90}
    for alpha in (0, 5, 50, 90):
        grid = _grid_of(cases, "NCT", task, alpha)
        for family, (_, values) in SPEC_GRIDS.items():
            assert grid[family] == values, (alpha, family)
    assert "NCT-ResNet8-alpha50-noise-S0.005" in _ids(cases, "robustness")
    assert "NCT-VGG16-alpha90-random_pruning-P5" in _ids(cases, "robustness")


@pytest.mark.parametrize("method", ["RTW", "TBW"])
def test_spec_profile_rtw_tbw_robustness_grid(method):
    cases = build_cases(load_profile("spec"), _methods())
    for task in ("ResNet8", "VGG16"):
        grid = _grid_of(cases, method, task)
        for family, (_, values) in SPEC_GRIDS.items():
            assert grid[family] == values, (method, task, family)


def test_spec_profile_tables_are_attached():
    cases = build_cases(load_profile("spec"), _methods())
    by_id = {c.id: c for c in cases["robustness"]}
    assert by_id["NCT-VGG16-alpha0-noise-S0.01"].table == "4"
    assert by_id["NCT-ResNet8-alpha0-pruning-P50"].table == "11"
    assert by_id["RTW-ResNet8-quantization-B8"].table == "15"
    assert by_id["TBW-VGG16-finetuning-E3"].table == "19"


# -- tags decide applicability -------------------------------------------------------------------
def test_tbw_tags(profile, cases):
    kinds = {t: e["task"] for t, e in profile.tasks.items()}
    for prop in PROPERTIES:
        tbw = [c for c in cases[prop] if c.method == "TBW"]
        assert all(kinds[c.task] == "classification" for c in tbw), prop
    assert not [c for p in FINGERPRINT_PROPERTIES[:2] for c in cases[p] if c.method == "TBW"]
    # integrity (§3) of the marked models, through the trigger-set logits: unmodified + each family's weakest value
    assert "TBW-ResNet8-integrity-unmodified" in _ids(cases, "integrity", "TBW")
    assert "TBW-VGG16-integrity-quantization-B16" in _ids(cases, "integrity", "TBW")
    assert not [c for c in cases["overwriting"] if c.method == "TBW"]  # not multi_mark
    assert {c.task for c in cases["imperceptibility"] if c.method == "TBW"} == {"ResNet8", "VGG16"}


def test_nct_tags(cases):
    assert {c.task for c in cases["fingerprint_unicity"] if c.method == "NCT"} == {"ResNet8", "VGG16"}
    assert [c for c in cases["fingerprint_robustness"] if c.method == "NCT"]
    integrity = _ids(cases, "integrity", "NCT")
    assert "NCT-ResNet8-integrity-unmodified" in integrity and "NCT-VGG16-integrity-unmodified" in integrity
    assert {c.task for c in cases["overwriting"] if c.method == "NCT"} == {"ResNet8", "VGG16"}
    # multi_mark: Overwriting is the Figure 4 case, not a robustness Modification
    assert not [c for c in cases["robustness"] if c.method == "NCT" and c.modification.startswith("overwriting")]
    # fingerprint configurations never carry the insertion epoch
    assert all("alpha" not in c.config_dict for c in cases["fingerprint_unicity"])


def test_rtw_tags(cases):
    assert not [c for p in FINGERPRINT_PROPERTIES[:2] for c in cases[p] if c.method == "RTW"]
    assert {c.task for c in cases["integrity"] if c.method == "RTW"} == {"ResNet8", "VGG16"}
    rob_groups = {c.group for c in cases["robustness"] if c.method == "RTW"}
    assert {c.group for c in cases["integrity"] if c.method == "RTW"} <= rob_groups  # same marked models
    assert not [c for c in cases["overwriting"] if c.method == "RTW"]
    assert [c for c in cases["robustness"] if c.method == "RTW" and c.modification.startswith("overwriting")]
    # RTW applies to every task: imperceptibility on the other tasks too, robustness on classification
    assert {c.task for c in cases["imperceptibility"] if c.method == "RTW"} == {
        "ResNet8", "VGG16", "DeepLabV3", "RDN", "Pix2pix"}
    assert {c.task for c in cases["robustness"] if c.method == "RTW"} == {"ResNet8", "VGG16"}


def test_other_tasks_have_imperceptibility_table_3(cases):
    for c in cases["imperceptibility"]:
        if c.task in ("DeepLabV3", "RDN", "Pix2pix"):
            assert c.table == "3", c.id


def _fake(name, **tags):
    base = dict(kind="active", insertion="post-training", detects=True, decodes=False, fingerprints=False,
                multi_mark=False, tasks=frozenset({"classification"}))
    base.update(tags)
    return SimpleNamespace(name=name, version="0", tags=Tags(**base))


def test_passive_fingerprint_method_gets_only_fingerprint_cases():
    profile = load_profile("embedded")
    fp = _fake("FP", kind="passive", insertion="none", detects=False, fingerprints=True)
    cases = build_cases(profile, [fp])
    assert not cases["imperceptibility"] and not cases["robustness"] and not cases["false_alarms"]
    assert not cases["overwriting"]
    assert _ids(cases, "fingerprint_unicity") == ["FP-ResNet8", "FP-VGG16"]
    assert "FP-ResNet8-pruning-P50" in _ids(cases, "fingerprint_robustness")
    assert "FP-ResNet8-integrity-unmodified" in _ids(cases, "integrity")


def test_active_method_without_detection_still_gets_robustness_and_false_alarms():
    """No declaration removes a mandatory clause: a method declaring detects=False is read through
    its decoding, or fails those clauses (nnw.checks.campaign) — it never skips them."""
    cases = build_cases(load_profile("embedded"), [_fake("NODET", detects=False)])
    assert _ids(cases, "imperceptibility") == ["NODET-ResNet8", "NODET-VGG16"]
    assert cases["robustness"] and cases["false_alarms"] and cases["cross_actor"]


def test_method_restricted_to_one_other_task():
    cases = build_cases(load_profile("embedded"), [_fake("SEG", tasks=frozenset({"segmentation"}))])
    assert _ids(cases, "imperceptibility") == ["SEG-DeepLabV3"]
    assert not cases["robustness"] and not cases["false_alarms"]


def test_default_config_of_a_method_without_grid():
    m = _fake("DEF")
    m.default_config = {"strength": 0.5}
    cases = build_cases(load_profile("embedded"), [m])
    assert {c.config_dict["strength"] for p in MARKED_PROPERTIES for c in cases[p]} == {0.5}
    assert "DEF-ResNet8-pruning-P50" in _ids(cases, "robustness")  # a single value is not in the id


# -- xdist groups ----------------------------------------------------------------------------------
def _marked_identity(c):
    return c.method, c.task, tuple(sorted(c.config))


def test_robustness_and_false_alarms_share_groups(cases):
    groups = defaultdict(set)
    for prop in ("robustness", "false_alarms"):
        for c in cases[prop]:
            groups[_marked_identity(c)].add(c.group)
    assert all(len(g) == 1 for g in groups.values()), {k: v for k, v in groups.items() if len(v) > 1}
    # and different marked models are in different groups
    owners = defaultdict(set)
    for ident, g in groups.items():
        owners[next(iter(g))].add(ident)
    assert all(len(v) == 1 for v in owners.values())


def test_fingerprint_cases_share_one_group_per_model(cases):
    groups = defaultdict(set)
    for prop in FINGERPRINT_PROPERTIES:
        for c in cases[prop]:
            if not get_method(c.method).tags.fingerprints:
                continue  # watermarks verify the integrity of their marked models (robustness groups)
            groups[(c.method, c.task)].add(c.group)
    assert groups and all(len(g) == 1 for g in groups.values())


@pytest.mark.parametrize("name", [TINY, "embedded", "spec"])
def test_cases_sharing_marked_models_share_an_xdist_group(name, methods):
    cases = build_cases(load_profile(name), methods)
    groups = defaultdict(set)
    for prop in MARKED_PROPERTIES:
        for c in cases[prop]:
            groups[_marked_identity(c)].add((prop, c.group))
    split = {k: sorted(v) for k, v in groups.items() if len({g for _, g in v}) > 1}
    assert not split, f"{len(split)} marked models are spread over several xdist groups, e.g. {next(iter(split.items()))}"
