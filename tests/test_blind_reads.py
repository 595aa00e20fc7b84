"""Every read of a model by the method goes through the blind runner (nnw/checks/campaign.py):
fingerprint extraction and matching, the Traceability Data of integrity verification, the
detections of the stress section. A method that changes what it is given fails the clause with a
message naming why; a matcher that sniffs its call stack cannot tell unicity from robustness; and
the unicity, fingerprint robustness and integrity rules have the power the README states, shown
on simulated inputs of known truth through the real checks (tests/synthetic.py's population)."""
from __future__ import annotations

import inspect
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from synthetic import SyntheticDetector, SyntheticZoo

from nnw.cases import family_size
from nnw.checks import decision as D
from nnw.checks.campaign import MethodMisbehaved, Read, run_blind
from nnw.checks.fingerprinting import check_fingerprint_robustness, check_fingerprint_unicity
from nnw.checks.integrity import check_integrity
from nnw.methods.base import Detection, KeyMismatchError
from nnw.methods.registry import get_method
from nnw.modifications import parse_modification
from nnw.profile import load_profile

EMBEDDED = load_profile("embedded")
TINY = load_profile(str(__import__("pathlib").Path(__file__).parent.parent / "fixtures" / "profiles" / "tiny.json"))
NOISE = parse_modification("noise(S=0.001)")


class SyntheticFingerprinter:
    """A passive fingerprint of known truth on the synthetic zoo's dict "models": the fingerprint
    names the model it came from; ``match`` finds a model's own entry (missing it with probability
    ``miss_rate`` when the query comes from a Modified model) and matches *another* model's entry
    with probability ``rate``, independently per (query, entry, key) from ``trial``."""

    name, version = "SynthFP", "1"
    tags = SimpleNamespace(kind="passive", insertion="none", detects=False, decodes=False, fingerprints=True,
                           multi_mark=False, tasks=frozenset({"classification"}), integrity=True)
    default_config = {}

    def __init__(self, rate: float = 0.05, trial: int = 0, miss_rate: float = 0.0):
        self.rate, self.trial, self.miss_rate = rate, trial, miss_rate

    def keygen(self, model, *, seed, config):
        return SimpleNamespace(id=seed)

    def extract(self, model, key):
        return torch.tensor([float(model["id"]), float(key.id), float(bool(model.get("modified")))],
                            dtype=torch.float64)

    def traceability_data(self, model, key, *, prepare=None):
        return torch.tensor([float(model["id"]), float(key.id), float(len(model.get("modified", "")))])

    def match(self, fingerprint, database):
        q_model, key, modified = (float(v) for v in fingerprint)
        best = None
        for name, ref in database.items():
            e_model = float(ref[0])
            u = np.random.default_rng([self.trial, int(key), int(q_model), int(e_model), int(modified)]).random()
            if e_model == q_model and (not modified or u >= self.miss_rate):
                return name, 1.0
            if e_model != q_model and u < self.rate and best is None:
                best = name
        return best, 0.5


class FpZoo(SyntheticZoo):
    """The synthetic zoo whose Modified models are new dicts (their Traceability Data change)."""

    def modified(self, task, model, modification, *, seed, identity, method, key):
        return {**model, "modified": modification.name}


def _unicity(method, profile=EMBEDDED, clauses=None):
    k = family_size(profile, get_method("NCT"), "fingerprint_unicity") if clauses is None else clauses
    return check_fingerprint_unicity(FpZoo(profile), method, "ResNet8", {}, model_seeds=profile.model_seeds,
                                     key_seeds=profile.key_seeds, clauses_in_family=k)


def _fp_robustness(method, profile=EMBEDDED, drop=0.0):
    return check_fingerprint_robustness(FpZoo(profile, drop=drop), method, "ResNet8", {}, NOISE,
                                        model_seeds=profile.model_seeds, key_seeds=profile.key_seeds, tolerance=0.1)


def _integrity(method, modification=None, profile=EMBEDDED, zoo=None):
    return check_integrity(zoo or FpZoo(profile), method, "ResNet8", {}, modification,
                           model_seeds=profile.model_seeds, key_seeds=profile.key_seeds)


# -- a method that changes what it is given fails the clause, with a message naming why -------------
class ExtractDestroyer(SyntheticFingerprinter):
    def extract(self, model, key):
        out = super().extract(model, key)
        model["id"] = -1
        return out


class TraceabilityDestroyer(SyntheticFingerprinter):
    def traceability_data(self, model, key, *, prepare=None):
        model["modified"] = "by the verifier"
        return super().traceability_data(model, key)


class DatabaseRewriter(SyntheticFingerprinter):
    def match(self, fingerprint, database):
        for ref in database.values():
            ref[0] = fingerprint[0]  # every entry now "is" the query
        return super().match(fingerprint, database)


class NaNMatcher(SyntheticFingerprinter):
    def match(self, fingerprint, database):
        return super().match(fingerprint, database)[0], float("nan")


class NameInventor(SyntheticFingerprinter):
    def match(self, fingerprint, database):
        return "seed 0", 1.0  # guesses the suite's names instead of answering with the database's


@pytest.mark.parametrize("method,clause,why", [
    (ExtractDestroyer(), "unicity", "changed the model it was given to extract a fingerprint from"),
    (ExtractDestroyer(), "robustness", "changed the model it was given to extract a fingerprint from"),
    (DatabaseRewriter(), "unicity", "changed the fingerprint database"),
    (DatabaseRewriter(), "robustness", "changed the fingerprint database"),
    (NaNMatcher(), "unicity", "non-finite score"),
    (NameInventor(), "robustness", "not an entry of the database"),
    (TraceabilityDestroyer(), "integrity", "changed the model it was given to read Traceability Data from"),
    (TraceabilityDestroyer(), "integrity-modified", "changed the model it was given to read Traceability Data from"),
])
def test_a_method_that_changes_or_fakes_what_it_reads_fails_the_clause(method, clause, why):
    res = {"unicity": lambda: _unicity(method, TINY), "robustness": lambda: _fp_robustness(method, TINY),
           "integrity": lambda: _integrity(method, None, TINY),
           "integrity-modified": lambda: _integrity(method, NOISE, TINY)}[clause]()
    assert res.verdict == "fail" and "broke the protocol" in res.message and why in res.message, res.message


def test_integrity_reads_of_a_watermark_go_through_the_runner():
    """A watermark's Traceability Data reader that zeroes a real model's weights fails integrity,
    and the suite's model is untouched."""
    model = torch.nn.Linear(4, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    class Zeroing(SyntheticDetector):
        tags = SimpleNamespace(**{**vars(SyntheticDetector.tags), "integrity": True})

        def traceability_data(self, m, key, *, prepare=None):
            with torch.no_grad():
                m.weight.zero_()
            return m.weight.detach().flatten()

    class LinearZoo(SyntheticZoo):
        def marked(self, task, method, config, seed, key_seed):
            return SimpleNamespace(model=model, key=SimpleNamespace(id=key_seed), record={"performance": {"top1": .8}})

    res = check_integrity(LinearZoo(TINY), Zeroing(0.0), "ResNet8", {}, None, model_seeds=[0], key_seeds=[0])
    assert res.verdict == "fail" and "changed the model it was given to read Traceability Data" in res.message
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# -- blindness: the call stack and the call site do not tell the clauses apart ----------------------
class StackRecorder(SyntheticFingerprinter):
    """Records, for every extraction and match, its thread, its call stack and the names it is shown."""

    def __init__(self):
        super().__init__(0.0)
        self.seen = []

    def _note(self, op, database=None):
        self.seen.append((op, threading.current_thread().name,
                          tuple(f.function for f in inspect.stack()[1:]), tuple(database or ())))

    def extract(self, model, key):
        self._note("extract")
        return super().extract(model, key)

    def match(self, fingerprint, database):
        self._note("match", database)
        return super().match(fingerprint, database)


def test_a_stack_sniffing_matcher_cannot_tell_unicity_from_robustness():
    uni, rob = StackRecorder(), StackRecorder()
    assert _unicity(uni, TINY).verdict != "fail"
    assert _fp_robustness(rob, TINY).verdict == "pass"
    for op in ("extract", "match"):
        u = {s for o, t, s, _ in uni.seen if o == op}
        r = {s for o, t, s, _ in rob.seen if o == op}
        assert u == r and len(u) == 1, (op, u ^ r)  # one call stack, the same for both clauses
        (stack,) = u
        assert not any(w in f for f in stack for w in ("unicity", "robustness", "fingerprint", "check_"))
    assert {t.split("_")[0] for _, t, _, _ in uni.seen + rob.seen} == {"nnw-detection"}
    names = {n for *_, db in uni.seen + rob.seen for n in db}
    assert names and not any("seed" in n for n in names)  # opaque names, never the model seeds
    sizes = lambda seen: {len(db) for o, _, _, db in seen if o == "match"}  # noqa: E731
    assert sizes(uni.seen) == sizes(rob.seen) == {1, len(TINY.model_seeds)}  # the same shapes of query


def test_stress_detections_are_blind_and_checked():
    from nnw.checks.stress import check_attack

    class StressZoo(SyntheticZoo):
        def task(self, name):
            return SimpleNamespace(performance_keys=("top1",), prepare=None, kind="classification")

    class Sniffer(SyntheticDetector):
        stacks = []

        def detect(self, model, key, *, prepare=None):
            self.stacks.append(" ".join(f.function for f in inspect.stack()))
            if model.get("shapes_changed"):
                raise KeyMismatchError("layer shapes changed")
            return super().detect(model, key)

    attack = parse_modification("noise(S=0.01)")
    rec = check_attack(StressZoo(TINY), Sniffer(0.0), "ResNet8", {}, attack, key_seeds=[0, 1], max_drop_points=5)
    assert [r["detected"] for r in rec["rows"]] == [True, True] and all(r["key_fits"] for r in rec["rows"])
    assert Sniffer.stacks and not any("check_attack" in s or "stress" in s for s in Sniffer.stacks)

    class Reshaping(StressZoo):
        def modified(self, task, model, modification, *, seed, identity, method, key):
            return {**model, "shapes_changed": True}

    rec = check_attack(Reshaping(TINY), Sniffer(0.0), "ResNet8", {}, attack, key_seeds=[0], max_drop_points=5)
    assert rec["rows"][0]["key_fits"] is False and rec["rows"][0]["detected"] is False

    class Destroyer(SyntheticDetector):
        def detect(self, model, key, *, prepare=None):
            model["marks"] = []
            return Detection(True, 1.0, 0.5)

    with pytest.raises(MethodMisbehaved, match="changed the model it was given to detect in"):
        check_attack(StressZoo(TINY), Destroyer(0.0), "ResNet8", {}, attack, key_seeds=[0], max_drop_points=5)


def test_the_runner_reads_fingerprints_as_tensors_and_matches_under_opaque_names():
    fp = torch.tensor([3.0, 1.0, 0.0])
    other = torch.tensor([4.0, 1.0, 0.0])
    reads = [Read(fp, {"own": fp.clone(), "other": other}, {"q": 1}), Read(fp, {"other": other}, {"q": 2})]
    rows = run_blind(SyntheticFingerprinter(0.0), reads, seed=1, operation="match")
    assert rows == [{"q": 1, "matched": "own", "score": 1.0}, {"q": 2, "matched": None, "score": 0.5}]
    (row,) = run_blind(SyntheticFingerprinter(), [Read({"id": 3, "marks": []}, SimpleNamespace(id=1))], seed=0,
                       operation="extract")
    assert torch.equal(row["fingerprint"], torch.tensor([3.0, 1.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="unknown blind operation"):
        run_blind(SyntheticFingerprinter(), [], seed=0, operation="delete")


# -- power of the rules, on inputs of known truth -----------------------------------------------------
def test_the_embedded_design_gives_the_unicity_rule_its_stated_power():
    """Exact, on the embedded design (M models, null_keys keys, one comparison per pair of models and
    key, Bonferroni over the profile's unicity clauses): a matcher at twice the nominal cross-match
    rate fails with probability ≥ 0.9; a calibrated one passes with probability ≥ 1 − family_alpha."""
    pol = EMBEDDED.decisions
    m = len(EMBEDDED.model_seeds)
    n = max(len(EMBEDDED.key_seeds), int(pol["null_keys"])) * m * (m - 1) // 2
    alpha = pol["family_alpha"] / family_size(EMBEDDED, get_method("NCT"), "fingerprint_unicity")
    nominal = pol["nominal_false_alarm_rate"]
    assert D.rate_power(n, nominal, alpha, 2 * nominal) >= pol["power_target"]
    assert D.rate_power(n, nominal, alpha, nominal) <= alpha


def test_a_matcher_at_twice_the_nominal_cross_match_rate_fails_unicity():
    verdicts = [_unicity(SyntheticFingerprinter(0.10, t)).verdict for t in range(12)]
    assert verdicts.count("fail") >= 10, verdicts  # exact power 0.99 on the embedded design; Monte Carlo slack


def test_a_calibrated_matcher_passes_unicity():
    results = [_unicity(SyntheticFingerprinter(0.05, t)) for t in range(12)]
    assert {r.verdict for r in results} == {"pass"}, [r.message for r in results]
    r = results[0]
    assert r.measured["cross_comparisons"] == 720 and r.measured["identifications"] == 9
    assert r.decision["power"]["cross-model matches"]["power"] >= 0.9


def test_a_small_unicity_sample_is_inconclusive_not_a_pass():
    from dataclasses import replace

    small = replace(EMBEDDED, data={**EMBEDDED.data, "decisions": {**EMBEDDED.decisions, "null_keys": 20}})
    res = check_fingerprint_unicity(FpZoo(small), SyntheticFingerprinter(0.0), "ResNet8", {},
                                    model_seeds=EMBEDDED.model_seeds, key_seeds=EMBEDDED.key_seeds)
    assert res.verdict == "inconclusive" and "would decide" in res.message, res.message


@pytest.mark.parametrize("miss_rate", [0.0, 0.5])
def test_fingerprint_robustness_rule_power(miss_rate):
    """The missed-detection rule on M × D identifications: a matcher that never misses a useful
    Modified model passes; one that misses half of them fails with probability 1 − 0.5^(M·D)."""
    verdicts = [_fp_robustness(SyntheticFingerprinter(0.0, t, miss_rate)).verdict for t in range(20)]
    if miss_rate == 0.0:
        assert set(verdicts) == {"pass"}
    else:
        n = len(EMBEDDED.model_seeds) * len(EMBEDDED.key_seeds)
        assert 1 - 0.5 ** n >= 0.9 and verdicts.count("fail") >= 17


def test_fingerprint_robustness_not_assessed_and_improvement_is_useful():
    broken = _fp_robustness(SyntheticFingerprinter(0.0, 0, 1.0), drop=0.5)
    assert broken.verdict == "not assessed" and "nothing to assess" in broken.message
    better = _fp_robustness(SyntheticFingerprinter(0.0, 0, 1.0), drop=-0.2)
    assert better.verdict == "fail" and all(r["useful"] for r in better.rows)


def test_fingerprint_robustness_draws_a_random_modification_anew_for_each_key():
    """D Modified versions per model for a random Modification (as the marked population has), one
    for a deterministic one; each row records the seed of the version it read."""
    class SeededZoo(FpZoo):
        def modified(self, task, model, modification, *, seed, identity, method, key):
            return {**model, "modified": modification.name, "seed": seed}

        def evaluate(self, task, model, identity):  # only one version in three stays useful
            return {"top1": 0.8 if model.get("seed", 0) % 3 == 0 else 0.1}

    fp = SyntheticFingerprinter(0.0, 0, 0.0)
    res = check_fingerprint_robustness(SeededZoo(EMBEDDED), fp, "ResNet8", {}, NOISE, model_seeds=[0, 1, 2],
                                       key_seeds=[0, 1, 2], tolerance=0.1)
    seeds = {(r["model"], r["modification_seed"]) for r in res.rows}
    assert len(seeds) == 9 and sum(r["useful"] for r in res.rows) == 3
    # 3 useful of 9 cannot decide and most versions are useless: beyond the useful range, not a pass
    assert res.verdict == "not assessed"
    one = _fp_robustness(fp)  # FpZoo: the same model whatever the seed
    assert len({(r["model"], r["modification_seed"]) for r in one.rows}) == 3 and one.verdict == "pass"


def test_integrity_rule_on_the_population():
    fp = SyntheticFingerprinter()
    assert _integrity(fp).verdict == "pass"
    assert _integrity(fp, NOISE).verdict == "pass"
    res = _integrity(fp, NOISE, zoo=SyntheticZoo(EMBEDDED))  # Modified models read like the originals
    assert res.verdict == "fail" and res.measured["judged_intact"] == 9
    one = check_integrity(FpZoo(EMBEDDED), fp, "ResNet8", {}, NOISE, model_seeds=[0], key_seeds=[0])
    assert one.verdict == "inconclusive" and "would decide" in one.message  # 1 model: power 0.5


def test_false_claims_are_read_blind_on_real_models(tmp_path):
    """The stress section's false claims (tiny ResNet8s, untrained: no training) read every crafted
    key through the runner: the claimant's own model and the independent ones, copies checked."""
    from nnw.cache import ModelCache
    from nnw.checks.stress import check_false_claims
    from nnw.zoo import Zoo

    task = Zoo(TINY, ModelCache(tmp_path), torch.device("cpu")).task("ResNet8")

    class UntrainedZoo:
        profile, device, progress = TINY, torch.device("cpu"), staticmethod(lambda msg: None)

        def task(self, name):
            return task

        def unmarked(self, name, seed):
            return task.build_model(seed).eval(), {"performance": {"error": 0.1}}

    nct = get_method("NCT")
    cfg = {k: v[0] for k, v in TINY.method_grid("NCT", "robustness").items()}
    (rec,) = check_false_claims(UntrainedZoo(), nct, "ResNet8", cfg, surrogate_seeds=[7], model_seeds=[0, 1], keys=2,
                                eps=[0.0], steps=1)
    assert rec["trials"] == 4 and rec["own_model_claim_rate"] == 1.0 and all(r["key_fits"] for r in rec["rows"])

    class Zeroing(type(nct)):
        def detect(self, model, key, *, prepare=None):
            with torch.no_grad():
                for p in model.parameters():
                    p.zero_()
            return super().detect(model, key, prepare=prepare)

    with pytest.raises(MethodMisbehaved, match="changed the model it was given to detect in"):
        check_false_claims(UntrainedZoo(), Zeroing(), "ResNet8", cfg, surrogate_seeds=[7], model_seeds=[0], keys=1,
                           eps=[0.0], steps=1)


def test_fingerprint_robustness_distills_a_fresh_student_for_each_key_and_fine_tunes_once():
    """A Modification that trains a fresh model (distillation) gives D students per model, since a
    student's usefulness varies like a fresh training's; fine-tuning continues the model: one version."""
    from nnw.modifications import parse_modification

    class TrainingZoo(FpZoo):
        def modified(self, task, model, modification, *, seed, identity, method, key):
            return {**model, "modified": modification.name, "seed": seed}

        def evaluate(self, task, model, identity):
            return {"top1": 0.8}

    fp = SyntheticFingerprinter(0.0, 0, 0.0)
    for name, versions in (("distillation(E=3)", 9), ("finetuning(E=1)", 3)):
        res = check_fingerprint_robustness(TrainingZoo(EMBEDDED), fp, "ResNet8", {}, parse_modification(name),
                                           model_seeds=[0, 1, 2], key_seeds=[0, 1, 2], tolerance=0.1)
        assert len({(r["model"], r["modification_seed"]) for r in res.rows}) == versions, name
