"""The decision rules (nnw/checks/decision.py) and the blind campaign (nnw/checks/campaign.py) on
simulated populations of known truth, through the real decision code: the power stated in the
README ("How verdicts are decided") is what these tests measure."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nnw.cases import family_size
from nnw.checks import decision as D
from nnw.checks.campaign import MethodMisbehaved, Read, run_blind
from nnw.checks.negative import check_false_alarms
from nnw.checks.robustness import check_robustness
from nnw.methods.base import Detection
from nnw.methods.registry import get_method
from synthetic import SyntheticDetector, SyntheticZoo
from nnw.modifications import parse_modification
from nnw.profile import Profile, load_profile

EMBEDDED = load_profile("embedded")


# -- a population of known truth (tests/synthetic.py) -----------------------------------------------
def _fa_verdicts(rate: float, runs: int, profile=EMBEDDED, clauses: int = 1) -> list[str]:
    out = []
    for trial in range(runs):
        res = check_false_alarms(SyntheticZoo(profile), SyntheticDetector(rate, trial), "ResNet8", {"t": trial},
                                 clauses_in_family=clauses)
        out.append(res.verdict)
    return out


def test_the_embedded_profile_states_enough_null_keys_for_the_stated_power():
    """Exact: with the embedded population (M × null_keys reads per clause) and Bonferroni over the
    profile's false-alarm clauses of the largest family, a detector at twice the nominal rate fails
    with probability ≥ 0.9, and a calibrated one passes every clause with probability ≥ 0.99."""
    pol = EMBEDDED.decisions
    n = len(EMBEDDED.model_seeds) * int(pol["null_keys"])
    k_max = max(family_size(EMBEDDED, get_method(m), "false_alarms") for m in ("NCT", "RTW", "TBW"))
    alpha = pol["family_alpha"] / k_max
    assert pol["false_alarm_power_at"] <= 2 * pol["nominal_false_alarm_rate"]
    assert D.rate_power(n, pol["nominal_false_alarm_rate"], alpha, pol["false_alarm_power_at"]) >= pol["power_target"] >= 0.9
    size = D.rate_power(n, pol["nominal_false_alarm_rate"], alpha, pol["nominal_false_alarm_rate"])
    assert 1 - (1 - size) ** k_max <= pol["family_alpha"]


def test_a_detector_at_twice_the_nominal_rate_fails_the_false_alarm_clause():
    """Through check_false_alarms and the blind runner: a detector at 10 % fails (Monte Carlo over
    independent populations, at the level of the NCT family of the embedded profile)."""
    k = family_size(EMBEDDED, get_method("NCT"), "false_alarms")
    verdicts = _fa_verdicts(0.10, 30, clauses=k)
    assert verdicts.count("fail") / len(verdicts) >= 0.8  # exact power ≥ 0.9; Monte Carlo slack


def test_a_calibrated_detector_passes_the_false_alarm_clause():
    verdicts = _fa_verdicts(0.05, 20, clauses=family_size(EMBEDDED, get_method("NCT"), "false_alarms"))
    assert verdicts.count("pass") == len(verdicts)


def test_a_lying_detector_fails_and_a_small_null_is_inconclusive():
    assert set(_fa_verdicts(1.0, 2)) == {"fail"}
    tiny = load_profile("embedded")
    small = Profile(name="small", source="<test>",
                    data={**tiny.data, "model_seeds": [0, 1], "key_seeds": [0],
                          "decisions": {**tiny.decisions, "null_keys": 20}})
    (v,) = _fa_verdicts(0.05, 1, profile=small)
    assert v == "inconclusive"


def test_excess_rate_outcomes_and_sample_needed():
    d = D.excess_rate(0, 0, nominal=0.05, alpha=0.01, power_at=0.1, target_power=0.9, what="false alarm")
    assert d.verdict == D.NOT_ASSESSED
    d = D.excess_rate(3, 50, nominal=0.05, alpha=0.01, power_at=0.1, target_power=0.9, what="false alarm")
    assert d.verdict == D.INCONCLUSIVE and "would decide" in d.message
    need = D.sample_for_power(0.05, 0.01, 0.1, 0.9)
    assert D.rate_power(need, 0.05, 0.01, 0.1) >= 0.9 > D.rate_power(need // 2, 0.05, 0.01, 0.1)


# -- robustness ---------------------------------------------------------------------------------
@pytest.mark.parametrize("miss_rate", [0.0, 0.5])
def test_robustness_rule_power(miss_rate):
    """max_miss_rate 0: a method that never misses always passes; one that misses half of the useful
    models fails with probability 1 − 0.5^(M·D) (≥ 0.9 from 4 models on; embedded: 9)."""
    mod = parse_modification("noise(S=0.01)")
    verdicts = [check_robustness(SyntheticZoo(EMBEDDED), SyntheticDetector(0.0, t, miss_rate), "ResNet8",
                                 {"t": t}, mod, tolerance=0.1).verdict for t in range(20)]
    if miss_rate == 0.0:
        assert set(verdicts) == {"pass"}
    else:
        n = len(EMBEDDED.model_seeds) * len(EMBEDDED.key_seeds)
        assert 1 - 0.5 ** n >= 0.9 and verdicts.count("fail") >= 17


def test_robustness_not_assessed_and_improvement_is_useful():
    mod = parse_modification("noise(S=0.01)")
    broken = check_robustness(SyntheticZoo(EMBEDDED, drop=0.5), SyntheticDetector(0.0, 0, 1.0), "ResNet8", {},
                              mod, tolerance=0.1)
    assert broken.verdict == "not assessed"  # nothing asserted: never a pass
    better = check_robustness(SyntheticZoo(EMBEDDED, drop=-0.2), SyntheticDetector(0.0, 0, 1.0), "ResNet8", {},
                              mod, tolerance=0.1)
    assert better.verdict == "fail" and all(r["useful"] for r in better.rows)


def test_a_value_beyond_the_useful_range_of_most_of_the_population_is_not_assessed_never_passed():
    """3 useful of 9 with no miss cannot reach power 0.9 against a miss rate of 0.5 (1 − 0.5³ =
    0.875): not assessed when most of the population is useless (beyond the useful range), but
    inconclusive when most stayed useful; a miss among the useful ones still fails."""
    kw = dict(nominal=0.0, alpha=0.01, power_at=0.5, target_power=0.9, what="missed detection")
    assert D.missed_detections(0, 3, 9, **kw).verdict == "not assessed"
    assert D.missed_detections(0, 3, 9, **kw).statistic["beyond_useful_range"] is True
    assert D.missed_detections(0, 3, 5, **kw).verdict == "inconclusive"
    assert D.missed_detections(0, 4, 9, **kw).verdict == "pass"
    assert D.missed_detections(1, 3, 9, **kw).verdict == "fail"
    assert D.missed_detections(0, 0, 9, **kw).verdict == "not assessed"
    # the grade: such a value leaves the certificate complete only if its family is decided elsewhere
    from nnw.certificate import grade

    def clause(verdict, value):
        return {"verdict": verdict, "nodeid": f"r[{value}]", "method": "X", "task": "T", "config": {},
                "clause_id": "robustness/pruning"}
    assert grade([clause("pass", 10), clause("not assessed", 90)])["grade"] == "conformant"
    assert grade([clause("not assessed", 50), clause("not assessed", 90)])["grade"] == "incomplete"
    # fingerprint robustness has one clause id for every Modification family: a decided noise value
    # does not excuse an undecided distillation
    fp = [{**clause("pass", 1), "clause_id": "fingerprint_robustness", "modification_family": "noise"},
          {**clause("not assessed", 3), "clause_id": "fingerprint_robustness", "modification_family": "distillation"}]
    assert grade(fp)["grade"] == "incomplete"


# -- imperceptibility ------------------------------------------------------------------------------
def _pairs(rng, loss: float, m: int, d: int, noise: float = 0.01, n_test: int = 5000):
    pairs = []
    for s in range(m):
        base = 0.8 + rng.normal(0, noise)
        for _ in range(d):
            wm = base * (1 - loss) + rng.normal(0, noise / 2)
            pairs.append(D.Pair(s, base, wm, D.binomial_se(base, n_test), D.binomial_se(wm, n_test)))
    return pairs


def test_non_inferiority_three_outcomes():
    rng = np.random.default_rng(0)
    ok = [D.non_inferiority(_pairs(rng, 0.0, 5, 3), margin=0.1, confidence=0.95, what="top1").verdict
          for _ in range(200)]
    bad = [D.non_inferiority(_pairs(rng, 0.3, 5, 3), margin=0.1, confidence=0.95, what="top1").verdict
           for _ in range(200)]
    assert ok.count("pass") / 200 >= 0.9 and "fail" not in ok
    assert bad.count("fail") / 200 >= 0.9 and "pass" not in bad
    edge = D.non_inferiority(_pairs(rng, 0.1, 2, 1, noise=0.05), margin=0.1, confidence=0.95, what="top1")
    assert edge.verdict == "inconclusive" and "would decide" in edge.message


def test_non_inferiority_uses_at_least_the_test_set_noise():
    # identical losses in every seed: the between-seed spread is 0, the test-set noise is not
    pairs = [D.Pair(s, 0.8, 0.75, D.binomial_se(0.8, 100), D.binomial_se(0.75, 100)) for s in range(3)]
    d = D.non_inferiority(pairs, margin=0.1, confidence=0.95, what="top1")
    assert d.statistic["bound_from"] == "test-set noise" and d.statistic["upper"] > 0.0625


def test_non_inferiority_on_the_classification_error_counts_more_errors_as_a_loss():
    # Table 1: a classifier's measure is its error (lower is better)
    worse = [D.Pair(s, 0.06, 0.12, D.binomial_se(0.06, 10000), D.binomial_se(0.12, 10000)) for s in range(3)]
    better = [D.Pair(s, 0.06, 0.05, D.binomial_se(0.06, 10000), D.binomial_se(0.05, 10000)) for s in range(3)]
    d = D.non_inferiority(worse, margin=0.5, confidence=0.95, what="error", lower_is_better=True)
    assert d.verdict == "fail" and abs(d.statistic["mean_relative_loss"] - 1.0) < 1e-12
    d = D.non_inferiority(better, margin=0.5, confidence=0.95, what="error", lower_is_better=True)
    assert d.verdict == "pass" and d.statistic["mean_relative_loss"] < 0


def _error_pairs(rng, mu, sd, m, d, impact=0.0, n_test=5000):
    """M seeds × D marked versions of classifiers whose error varies seed to seed by ``sd`` (the
    reference models' spread) and is read on ``n_test`` test images."""
    pairs = []
    for s in range(m):
        e_u = rng.binomial(n_test, max(1e-3, rng.normal(mu, sd))) / n_test
        for _ in range(d):
            e_w = rng.binomial(n_test, max(1e-3, rng.normal(mu * (1 + impact), sd * (1 + impact)))) / n_test
            pairs.append(D.Pair(s, e_u, e_w, D.binomial_se(e_u, n_test), D.binomial_se(e_w, n_test)))
    return pairs


@pytest.mark.parametrize("model,mu,sd,pass_at_zero", [("ResNet8", 0.064, 0.0045, 0.97), ("VGG16", 0.036, 0.0076, 0.8)])
def test_non_inferiority_power_on_the_embedded_classifiers(model, mu, sd, pass_at_zero):
    # the README's figures: M = D = 3, margin 1.0 on the error (the profile's), 5,000 test patches
    margin = load_profile("embedded").decisions["noninferiority_margin"]["error"]
    rng = np.random.default_rng(1)
    run = lambda impact: [D.non_inferiority(_error_pairs(rng, mu, sd, 3, 3, impact), margin=margin, confidence=0.95,
                                            what="error", lower_is_better=True).verdict for _ in range(400)]
    none, triple = run(0.0), run(2.0)
    assert none.count("pass") / 400 >= pass_at_zero and "fail" not in none
    assert "pass" not in triple


def test_usefulness_and_impact_are_read_on_the_classification_error():
    from nnw.checks.robustness import degradation
    from nnw.metrics import impact
    from nnw.tasks import PERFORMANCE_KEYS

    assert PERFORMANCE_KEYS["classification"] == ("error",)
    tol = load_profile("embedded").thresholds["useful_error_tolerance"]
    assert tol["error"] == 0.05   # 5 points of error (absolute), as WRT's rule
    # 93.6 % -> 86 % top-1: 6.4 % -> 14 % error, 7.6 points more: no longer useful
    drop, useful = degradation({"error": 0.14}, {"error": 0.064}, ("error",), tol)
    assert not useful and abs(drop - 0.076 / 0.064) < 1e-12
    drop, useful = degradation({"error": 0.05}, {"error": 0.064}, ("error",), tol)
    assert useful and drop < 0   # fewer errors: improved, useful
    drop, useful = degradation({"error": 0.10}, {"error": 0.064}, ("error",), tol)
    assert useful and drop > 0.5  # 3.6 points more (56 % relative): still useful
    drop, useful = degradation({"psnr": 30.0}, {"psnr": 34.0}, ("psnr",), tol)
    assert not useful            # 11.8 % below: the default tolerance applies
    assert impact(0.036, 0.040) == pytest.approx(11.111, abs=1e-3)   # VGG16: Top-1 would say 0.4 %


# -- the method is untrusted -----------------------------------------------------------------------
class _Hostile(SyntheticDetector):
    def __init__(self, behaviour):
        super().__init__(0.0)
        self.behaviour = behaviour

    def detect(self, model, key, *, prepare=None):
        if self.behaviour == "destroy":
            for p in model.parameters():
                p.data.zero_()
            return Detection(False, 0.0, 0.5)
        if self.behaviour == "nan":
            return Detection(True, math.nan, 0.5)
        if self.behaviour == "not-bool":
            return Detection("yes", 1.0, 0.5)
        if self.behaviour == "stack":  # looks for the clause in its call stack
            import inspect

            names = {f.function for f in inspect.stack()}
            return Detection(not any("false_alarm" in n or "negative" in n for n in names), 1.0, 0.5)
        raise AssertionError


@pytest.mark.parametrize("behaviour,message", [("destroy", "changed the model"), ("nan", "non-finite score"),
                                               ("not-bool", "must be a bool")])
def test_the_runner_catches_a_method_that_breaks_the_protocol(behaviour, message):
    model = torch.nn.Linear(3, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(MethodMisbehaved, match=message):
        run_blind(_Hostile(behaviour), [Read(model, SimpleNamespace(id=1))], prepare=None, seed=0)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the suite's copy is intact


def test_the_call_stack_does_not_name_the_clause():
    model = torch.nn.Linear(3, 2)

    def check_false_alarms_like():
        return run_blind(_Hostile("stack"), [Read(model, SimpleNamespace(id=1))], prepare=None, seed=0)

    assert check_false_alarms_like()[0]["detected"] is True  # it could not see the caller


def test_reads_are_shuffled_but_rows_keep_their_order():
    seen = []

    class Recorder(SyntheticDetector):
        def detect(self, model, key, *, prepare=None):
            seen.append(key.id)
            return Detection(True, 1.0, 0.5)

    reads = [Read({"id": i, "marks": []}, SimpleNamespace(id=i), {"i": i}) for i in range(20)]
    rows = run_blind(Recorder(0.0), reads, prepare=None, seed=3)
    assert [r["i"] for r in rows] == list(range(20)) and seen != list(range(20))
    assert rows == run_blind(Recorder(0.0), reads, prepare=None, seed=3)  # same seed, same rows


def test_a_nan_score_never_reaches_the_certificate_as_bare_nan():
    import json

    from nnw.certificate import strict_json

    text = json.dumps(strict_json({"measured": {"score": [math.nan, 0.5, math.inf]}}), allow_nan=False)
    assert json.loads(text) == {"measured": {"score": [None, 0.5, None]}}


def test_grades_follow_the_verdicts():
    from nnw.certificate import EXIT_STATUS, grade

    def g(*verdicts):
        return grade([{"verdict": v, "nodeid": f"t{i}"} for i, v in enumerate(verdicts)])["grade"]

    assert g("pass", "not applicable") == "conformant"
    assert g("pass", "known failure") == "conformant with declared deviations"
    assert g("pass", "inconclusive") == g("not assessed") == "incomplete"
    assert g("fail", "inconclusive", "known failure") == "not conformant"
    # a grid value beyond the useful range: excused only when its family was decided at another value
    fam = {"method": "M", "task": "T", "config": {}, "clause_id": "robustness/noise"}
    rec = lambda v, i, **kw: {"verdict": v, "nodeid": f"n{i}", **fam, **kw}
    assert grade([rec("pass", 0), rec("not assessed", 1)])["grade"] == "conformant"
    assert grade([rec("pass", 0), rec("not assessed", 1, task="U")])["grade"] == "incomplete"
    assert grade([rec("pass", 0), rec("not assessed", 1)])["beyond_useful_range"] == ["n1"]
    assert EXIT_STATUS["incomplete"] == 6 and EXIT_STATUS["not conformant"] == 1


# -- no declaration removes a mandatory clause --------------------------------------------------------
def _tagged(**tags):
    m = SyntheticDetector(0.0)
    m.tags = SimpleNamespace(**{**vars(SyntheticDetector.tags), **tags})
    m.name = "Declared"
    m.default_config = {}
    return m


def test_an_active_method_declaring_no_detector_still_gets_robustness_and_false_alarms_and_fails_them():
    from nnw.cases import build_cases

    silent = _tagged(detects=False, decodes=False)
    cases = build_cases(EMBEDDED, [silent])
    assert cases["robustness"] and cases["false_alarms"] and cases["cross_actor"]
    res = check_robustness(SyntheticZoo(EMBEDDED), silent, "ResNet8", {}, parse_modification("noise(S=0.01)"),
                           tolerance=0.1)
    assert res.verdict == "fail" and "declares neither detect nor decode" in res.message


def test_a_third_party_multi_mark_method_gets_overwriting():
    from nnw.cases import build_cases

    cases = build_cases(EMBEDDED, [_tagged(multi_mark=True)])
    assert any(c.modification and c.modification.startswith("overwriting") for c in cases["robustness"])


def _miou_pairs(rng, mu, sd, m, d, loss=0.0):
    """M seeds × D marked versions of segmenters whose mIoU varies seed to seed by ``sd`` (a marked
    model inserted at initialization is an independent training); no test-set standard error."""
    pairs = []
    for s in range(m):
        u = rng.normal(mu, sd)
        pairs += [D.Pair(s, u, rng.normal(mu * (1 - loss), sd), None, None) for _ in range(d)]
    return pairs


def test_non_inferiority_power_on_the_embedded_segmenter():
    # the README's figures: DeepLabV3 at batch size 8, mIoU 0.464 ± 0.022 over 10 seeds, judged on its
    # own population (M = 8, D = 1) against the 10 % margin; the 3 × 3 design at batch size 16
    # (0.40 ± 0.035) decided a mark with no effect 30 % of the time
    p = load_profile("embedded")
    margin = p.decisions["noninferiority_margin"]["default"]
    m, d = len(p.model_seeds_of("DeepLabV3")), len(p.key_seeds_of("DeepLabV3"))
    rng = np.random.default_rng(2)
    run = lambda mu, sd, m, d, loss: [D.non_inferiority(_miou_pairs(rng, mu, sd, m, d, loss), margin=margin,
                                                        confidence=0.95, what="miou").verdict for _ in range(1000)]
    none, quarter = run(0.464, 0.022, m, d, 0.0), run(0.464, 0.022, m, d, 0.25)
    assert none.count("pass") / 1000 >= 0.97 and "fail" not in none
    assert quarter.count("fail") / 1000 >= 0.97 and "pass" not in quarter
    old = run(0.40, 0.035, 3, 3, 0.0)
    assert old.count("pass") / 1000 <= 0.45 and "fail" not in old
