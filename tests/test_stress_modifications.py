"""Tests of the attacks beyond the standard (adversarial stress section): each attack with its
parameter, the function-preserving ones on the repository's real models (outputs unchanged up to
float tolerance in eval mode, weights changed at fixed positions), and the stress section's rule,
claims, false-claim crafting and certificate section (nnw.stress, nnw.checks.stress)."""
from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from nnw.checks.stress import (
    NOT_INSERTED,
    REMOVED,
    SURVIVED,
    TOO_COSTLY,
    claimed_families,
    craft_key,
    outcome,
    pgd_targeted,
    summarize_attack,
)
from nnw.layers import weight_layers
from nnw.methods.base import KeyMismatchError
from nnw.methods.registry import get_method
from nnw.models import build_model
from nnw.modifications import ModificationContext, make_modification, parse_modification
from nnw.modifications.extraction import dead_leaves, noise_images
from nnw.modifications.fine_pruning import last_conv_space, mean_activations, prune_units
from nnw.modifications.function_preserving import analyse, scale_space
from nnw.modifications.query import gaussian_blur, jpeg, shift

pytest_plugins = ["pytester"]

REPO = Path(__file__).parents[1]
TINY = REPO / "fixtures" / "profiles" / "tiny.json"
FP = {"permutation": {"P": 100}, "rescaling": {"c": 4}, "sign_flip": {"P": 50}, "dummy_neurons": {"P": 25}}
MODELS = {"ResNet8": {"width": 0.5}, "VGG16": {"width": 0.0625}}


@pytest.fixture(scope="module", autouse=True)
def _threads(one_thread):
    yield


def _real_model(name: str) -> nn.Module:
    """A model of the repository with non-trivial BatchNorm statistics and affine parameters, in eval mode."""
    model = build_model(name, seed=0, **MODELS[name])
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.randn(n, generator=g) * 0.5 + 1
            m.bias.data = torch.randn(n, generator=g) * 0.3
            m.running_mean = torch.randn(n, generator=g) * 0.3
            m.running_var = torch.rand(n, generator=g) + 0.05
    return model.eval()


@pytest.fixture(scope="module")
def real_models():
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    out = {}
    for name in MODELS:
        model = _real_model(name)
        with torch.no_grad():
            out[name] = (model, x, model(x))
    return out


def _changed_share(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a != b).float().mean())


# -- function-preserving transformations on real models ------------------------------------------------
@pytest.mark.parametrize("family", list(FP))
@pytest.mark.parametrize("name", list(MODELS))
def test_function_preserving_on_real_models(real_models, name, family):
    model, x, y = real_models[name]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    attacked = make_modification(family, **FP[family]).apply(model, seed=3).eval()
    with torch.no_grad():
        y2 = attacked(x)
    # the function is unchanged up to float rounding ...
    assert torch.allclose(y2, y, rtol=1e-4, atol=1e-4 * float(y.abs().max())), float((y2 - y).abs().max())
    # ... the input model is untouched ...
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    # ... and the weights at fixed positions moved
    old, new = weight_layers(model), weight_layers(attacked)
    hidden = list(old)[:-1]  # every layer but the classifier's rows
    if family == "dummy_neurons":
        grown = [n for n in hidden if new[n].shape != old[n].shape]
        assert len(grown) == len(hidden)
        shares = []
        for n in grown:
            assert new[n].shape[0] == old[n].shape[0] + round(0.25 * old[n].shape[0])
            shares.append(_changed_share(old[n].reshape(-1), new[n].reshape(-1)[: old[n].numel()]))
        assert sum(shares) / len(shares) > 0.3, shares  # units inserted at random positions shift the others
        return
    shares = {n: _changed_share(old[n], new[n]) for n in old}
    if family == "sign_flip":  # ReLU nets: only into a BatchNorm (half of each such conv's units), nowhere else
        into_bn = {f"{p}.weight" for p, _ in analyse(model).bn_pairs}
        assert all(shares[n] == pytest.approx(0.5, abs=0.07) if n in into_bn else shares[n] == 0 for n in old), shares
        assert len(into_bn) >= len(hidden) - 2
        return
    assert all(shares[n] > 0.9 for n in hidden), shares


@pytest.mark.parametrize("family", list(FP))
def test_function_preserving_is_deterministic_and_its_parameter_acts(real_models, family):
    model, x, y = real_models["ResNet8"]
    mod = make_modification(family, **FP[family])
    a, b, c = (mod.apply(model, seed=s).state_dict() for s in (3, 3, 4))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(a[k].shape != c[k].shape or not torch.equal(a[k], c[k]) for k in a)
    zero = {"permutation": {"P": 0}, "rescaling": {"c": 1}, "sign_flip": {"P": 0}, "dummy_neurons": {"P": 0}}[family]
    same = make_modification(family, **zero).apply(model, seed=3).state_dict()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in same.items())


def test_permutation_moves_p_percent_of_units(real_models):
    model, _, _ = real_models["VGG16"]
    space = next(s for s in analyse(model).transformable() if s.key == "features.24.weight")  # 32 units
    g0 = model.features[25].weight  # its BatchNorm: permuted with this space only
    g = parse_modification("permutation(P=50)").apply(model, seed=0).features[25].weight
    moved = int((g0 != g).sum())
    assert moved == round(0.5 * space.channels)


def test_channel_spaces_of_resnet8_join_residual_branches():
    spaces = {s.key: s for s in analyse(build_model("ResNet8", seed=0, width=0.5)).spaces}
    stem = spaces["layer1.conv2.weight"]  # the identity shortcut joins the stem and the first block
    assert set(stem.producers) == {"conv1", "layer1.conv2"} and set(stem.bns) == {"bn1", "layer1.bn2"}
    assert set(stem.consumers) == {"layer1.conv1", "layer2.conv1", "layer2.shortcut"}
    assert set(spaces["layer3.conv2.weight"].producers) == {"layer3.conv2", "layer3.shortcut"}
    assert spaces["fc.weight"].frozen == ["model output"]


class _TanhNet(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.a, self.b, self.act = nn.Linear(8, 16), nn.Linear(16, 4), act

    def forward(self, x):
        return self.b(self.act(self.a(x)))


class _CatNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(8, 6), nn.Linear(8, 6), nn.Linear(12, 3)

    def forward(self, x):
        return self.c(torch.relu(torch.cat([self.a(x), self.b(x)], 1)))


def test_sign_flip_only_where_valid():
    x = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    odd, relu = _TanhNet(nn.Tanh()), _TanhNet(nn.ReLU())
    flip = parse_modification("sign_flip(P=50)")
    # odd activation: flipped (incoming and outgoing weights), function kept
    flipped = flip.apply(odd, seed=1)
    assert _changed_share(odd.a.weight, flipped.a.weight) > 0.3
    assert torch.allclose(flipped(x), odd(x), atol=1e-6)
    # ReLU without BatchNorm: not valid, left unchanged and reported so ...
    same = flip.apply(relu, seed=1)
    assert torch.equal(same.a.weight, relu.a.weight) and torch.equal(same.b.weight, relu.b.weight)
    assert "not odd" in flip.coverage(relu)["not_valid"]["a.weight"]
    # ... because flipping through a ReLU does change the function
    naive = _TanhNet(nn.ReLU())
    naive.load_state_dict(relu.state_dict())
    space = next(s for s in analyse(naive).spaces if s.key == "a.weight")
    scale_space(dict(naive.named_modules()), space, torch.tensor([-1.0] + [1.0] * 15, dtype=torch.float64))
    assert not torch.allclose(naive(x), relu(x), atol=1e-4)


def test_concatenation_freezes_its_spaces():
    net = _CatNet()
    assert {s.key for s in analyse(net).transformable()} == set()
    out = parse_modification("permutation(P=100)").apply(net, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), out.state_dict().values()))


def test_rescaling_leaves_non_homogeneous_spaces_alone():
    torch.manual_seed(0)
    net = _TanhNet(nn.Tanh())
    assert torch.equal(parse_modification("rescaling(c=10)").apply(net, seed=0).a.weight, net.a.weight)


# -- the weight-space marks lose to them ---------------------------------------------------------------
def test_nct_and_rtw_marks_lose_to_function_preserving_attacks(real_models):
    model, _, _ = real_models["ResNet8"]
    nct, rtw = get_method("NCT"), get_method("RTW")
    key = nct.keygen(model, seed=0, config={"N": 256})
    marked = nct.embed(model, key)
    assert nct.detect(marked, key).present
    # RTW: the ambiguity construction gives a key that detects in this model (b := its own bits)
    rkey = craft_key(rtw, marked, None, seed=0, config={"T": 32}, eps=0, steps=0, momentum=1.0)[0]
    assert rtw.detect(marked, rkey).present
    for family in ("permutation", "sign_flip"):
        attacked = make_modification(family, **FP[family]).apply(marked, seed=1).eval()
        assert not nct.detect(attacked, key).present, family
        assert not rtw.detect(attacked, rkey).present, family
    bigger = make_modification("dummy_neurons", P=25).apply(marked, seed=1)
    with pytest.raises(KeyMismatchError):
        nct.detect(bigger, key)


# -- fine-pruning, extraction ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_task():
    from nnw.profile import load_profile
    from nnw.tasks import build_task

    return build_task("ResNet8", load_profile(str(TINY)).tasks["ResNet8"])


def _context(task):
    from nnw.training import train

    return ModificationContext(task=task, train=train, device=torch.device("cpu"))


def test_fine_pruning_prunes_the_dormant_units_of_the_last_conv_layer(tiny_task):
    model = tiny_task.build_model(0).eval()
    space = last_conv_space(model)
    assert space.consumers == ["fc"] and "layer3.conv2" in space.producers
    act = mean_activations(model, space, tiny_task.train.x[:64], tiny_task.prepare)
    assert act.shape == (space.channels,) and bool((act >= 0).all())  # after the ReLU
    same = parse_modification("fine_pruning(P=0,E=0,n=64)").apply(model, context=_context(tiny_task))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), same.state_dict().values()))
    out = parse_modification("fine_pruning(P=50,n=64)").apply(model, seed=0, context=_context(tiny_task))
    zero_cols = (out.fc.weight == 0).all(0)
    assert int(zero_cols.sum()) == round(0.5 * space.channels)
    assert not torch.equal(out.layer1.conv1.weight, model.layer1.conv1.weight)  # fine-tuned
    # the pruned units are the least active ones, and they stay removed through the fine-tuning
    pruned = torch.nonzero(zero_cols).squeeze(1)
    assert set(pruned.tolist()) == set(torch.sort(act, stable=True).indices[:len(pruned)].tolist())
    assert bool((out.layer3.bn2.weight[pruned] == 0).all()) and bool((out.layer3.conv2.weight[pruned] == 0).all())


def test_prune_units_removes_units():
    model = build_model("VGG16", seed=0, width=0.0625).eval()
    space = last_conv_space(model)
    masks = prune_units(model, space, torch.tensor([0, 3]))
    assert masks and bool((model.classifier.weight[:, [0, 3]] == 0).all())
    assert bool((model.features[40].weight[[0, 3]] == 0).all())


def test_query_images_are_deterministic_out_of_distribution_images():
    a, b = dead_leaves(16, (3, 32, 32), seed=1), dead_leaves(16, (3, 32, 32), seed=1)
    assert a.dtype == torch.uint8 and a.shape == (16, 3, 32, 32) and torch.equal(a, b)
    assert not torch.equal(a, dead_leaves(16, (3, 32, 32), seed=2))
    # piecewise constant discs: most neighbouring pixels are equal, unlike noise
    same = lambda x: float((x[..., 1:] == x[..., :-1]).all(1).float().mean())  # noqa: E731
    n = noise_images(16, (3, 32, 32), seed=1)
    assert same(a) > 0.6 > 0.01 > same(n)


def test_extraction_distils_a_fresh_student_from_ood_queries(tiny_task):
    teacher = tiny_task.build_model(0).eval()
    mod = parse_modification("extraction(E=1,n=64,source=noise)")
    s1 = mod.apply(teacher, seed=0, context=_context(tiny_task))
    s2 = mod.apply(teacher, seed=0, context=_context(tiny_task))
    assert type(s1) is type(teacher)
    assert all(torch.equal(a, b) for a, b in zip(s1.state_dict().values(), s2.state_dict().values()))
    fresh = tiny_task.build_model(40_000)
    assert not torch.equal(s1.conv1.weight, fresh.conv1.weight)  # trained
    assert not torch.equal(s1.conv1.weight, teacher.conv1.weight)  # not a copy of the teacher


# -- query-time transformations and refusal ---------------------------------------------------------------
def test_jpeg_matches_a_reference_codec():
    from PIL import Image

    x = dead_leaves(4, (3, 32, 32), seed=0)
    ref = []
    for im in x:
        buf = io.BytesIO()
        Image.fromarray(im.permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=50, subsampling=0)
        ref.append(torch.from_numpy(np.array(Image.open(buf))).permute(2, 0, 1))
    ref = torch.stack(ref).double()
    ours = jpeg(x.double(), 50)
    assert float((ours - ref).abs().mean()) < 0.3 * float((x.double() - ref).abs().mean())
    assert float((jpeg(x.double(), 10) - x).abs().mean()) > float((jpeg(x.double(), 90) - x).abs().mean())


def test_blur_and_shift():
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    assert torch.allclose(gaussian_blur(torch.full_like(x, 7.0), 1.0), torch.full_like(x, 7.0))
    assert float(gaussian_blur(x, 1.0).std()) < float(x.std())
    s = shift(x, 2, -1)
    assert torch.equal(s[..., 2:, :-1], x[..., :-2, 1:])


def test_query_transforms_travel_with_the_model(tiny_task):
    model = tiny_task.build_model(0).eval()
    x = tiny_task.prepare(tiny_task.test.x[:8])
    with torch.no_grad():
        y = model(x)
        for name in ("query_jpeg(Q=25)", "query_blur(sigma=1)", "query_shift(px=2)"):
            served = parse_modification(name).apply(model, seed=0, context=_context(tiny_task))
            assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), served.state_dict().values()))
            assert not torch.allclose(served(x), y), name
            import copy

            assert torch.equal(copy.deepcopy(served)(x), served(x))
        assert torch.equal(parse_modification("query_shift(px=0)").apply(model, context=_context(tiny_task))(x), y)
        assert torch.equal(model(x), y)  # the original serves unchanged
    with pytest.raises(ValueError, match="ModificationContext"):
        parse_modification("query_jpeg(Q=50)").apply(model)


@pytest.mark.parametrize("score", ["msp", "energy"])
def test_ood_refusal_refuses_fpr_of_clean_queries(tiny_task, score):
    model = tiny_task.build_model(0).eval()
    mod = parse_modification(f"ood_refusal(FPR=20,score={score},n=100)")
    served = mod.apply(model, context=_context(tiny_task))
    with torch.no_grad():
        clean = tiny_task.prepare(tiny_task.train.x[:100])
        y, ys = model(clean), served(clean)
    refused = (y.argmax(1) != ys.argmax(1))
    assert 15 <= int(refused.sum()) <= 25
    top2 = y.topk(2, dim=1).indices[:, 1]
    assert torch.equal(ys.argmax(1)[refused], top2[refused])  # answered with the second choice
    assert parse_modification("ood_refusal(FPR=0)").apply(model, context=_context(tiny_task))._forward_hooks == {}


# -- the rule, claims, false claims -----------------------------------------------------------------------
def _row(d, detected, drop, before=True):
    return {"key_seed": d, "detected": detected, "accuracy_drop_points": drop,
            "outcome": outcome(detected, drop, 5.0, before)}


def test_wrt_rule_and_claims():
    assert outcome(True, 0.0, 5.0) == SURVIVED
    assert outcome(False, 4.9, 5.0) == REMOVED
    assert outcome(False, 5.0, 5.0) == TOO_COSTLY
    assert outcome(False, 0.0, 5.0, detected_before=False) == NOT_INSERTED
    s = summarize_attack([_row(0, False, 0.0), _row(1, False, 9.0), _row(2, True, 0.0)], max_drop_points=5.0,
                         claim="permutation")
    assert (s["removed"], s["too_costly"], s["detected"], s["keys"]) == (1, 1, 1, 3)
    assert s["claim"]["holds"] is False and "keys 0" in s["claim"]["message"]
    ok = summarize_attack([_row(0, True, 0.0), _row(1, False, 9.0)], max_drop_points=5.0, claim="permutation")
    assert ok["claim"]["holds"] is True and ok["outcome"] == "survived for 1/2 keys, else too costly"
    none = summarize_attack([_row(0, False, 0.0, before=False)], max_drop_points=5.0, claim="permutation")
    assert none["outcome"] == NOT_INSERTED and none["claim"]["holds"] is None and none["keys"] == 0


def test_claims_name_families_or_groups():
    method = SimpleNamespace(claims=("function_preserving", "fine_pruning"))
    fams = claimed_families(method)
    assert fams["permutation"] == fams["dummy_neurons"] == "function_preserving"
    assert fams["fine_pruning"] == "fine_pruning" and "extraction" not in fams
    assert claimed_families(SimpleNamespace()) == {}


def test_pgd_crafts_triggers_the_surrogate_labels_as_claimed():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 10)).eval()  # a surrogate with useful gradients
    prepare = lambda x: (x.float() / 255 - 0.5) / 0.25  # noqa: E731
    x = dead_leaves(32, (3, 12, 12), seed=0)
    labels = torch.randint(0, 10, (32,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(pgd_targeted(model, x, labels, prepare, eps=0, steps=10), x)  # the control
    adv = pgd_targeted(model, x, labels, prepare, eps=16, steps=10)
    assert adv.dtype == torch.uint8 and int((adv.int() - x.int()).abs().max()) <= 16
    with torch.no_grad():
        before = float((model(prepare(x)).argmax(1) == labels).float().mean())
        after = float((model(prepare(adv)).argmax(1) == labels).float().mean())
    assert after > max(0.5, before)
    other = nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 10)).eval()
    both = pgd_targeted([model, other], x, labels, prepare, eps=16, steps=10, diversity=0.7, seed=1)
    assert torch.equal(both, pgd_targeted([model, other], x, labels, prepare, eps=16, steps=10, diversity=0.7, seed=1))
    with torch.no_grad():  # the ensemble's adversarial images carry the claimed labels in both surrogates
        assert all(float((m(prepare(both)).argmax(1) == labels).float().mean()) > 0.5 for m in (model, other))


# -- the pytest section: -m stress, a failed claim, the certificate -----------------------------------------
CLAIMING = '''
from nnw.methods.nct import NCT

class PermutationProofNCT(NCT):
    """NCT claiming (wrongly) that its mark survives neuron permutations."""
    claims = ("permutation",)
'''


def test_stress_run_reports_a_failed_claim_in_its_own_certificate_section(pytester, tmp_path, monkeypatch):
    for var in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "NNW_PROFILE", "NNW_CACHE_DIR", "PYTEST_ADDOPTS"):
        monkeypatch.delenv(var, raising=False)
    profile = json.loads(TINY.read_text())
    profile["stress"]["key_seeds"] = [0]
    (tmp_path / "p.json").write_text(json.dumps(profile))
    pytester.makepyfile(claiming=CLAIMING)
    pytester.syspathinsert()
    cert = tmp_path / "cert.json"
    common = [str(REPO / "conformance" / "test_stress.py"), "-p", "no:cacheprovider", "--import-mode=importlib",
              "--nnw-profile", str(tmp_path / "p.json"), "--nnw-method", "claiming:PermutationProofNCT",
              "--nnw-cache-dir", str(tmp_path / "cache"), "--nnw-certificate", str(cert)]
    # without -m stress: nothing of the stress section runs
    idle = pytester.runpytest_inprocess(*common, "--collect-only", "-q")
    assert "permutation" not in "\n".join(idle.outlines)
    result = pytester.runpytest_inprocess(*common, "-m", "stress", "-k", "alpha0-permutation or alpha0-query_jpeg")
    out = "\n".join(result.outlines)
    result.assert_outcomes(passed=1, failed=1)
    assert "failed claim" in out and "adversarial stress" in out
    data = json.loads(cert.read_text())
    assert data["clauses"] == [] and data["summary"]["counts"] == {}
    stress = data["stress"]
    (claim,) = stress["claims"]
    assert claim["invariance"] == "permutation" and claim["holds"] is False
    by_attack = {r["attack"]: r for r in stress["attacks"]}
    assert by_attack["permutation(P=100)"]["outcome"] == REMOVED
    assert by_attack["query_jpeg(Q=50)"]["outcome"] == SURVIVED  # weights untouched: NCT still reads its mark
    from nnw.report import render_markdown

    text = render_markdown(data)
    assert "## Adversarial stress" in text and "**FAILED**" in text and "### Failed claims" in text
