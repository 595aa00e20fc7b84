"""Tests of the weight-space Modification catalogue (NNW-NNT Modification table, NNW-TEC §7.2.6).

Cross-checks against torch.nn.utils.prune, quantization level counts and error bounds,
noise statistics, and hypothesis properties (counts, input never altered, determinism,
name round-trip, parameter validation).
"""

from __future__ import annotations

import copy
import math
import re

import pytest
import torch
import torch.nn.utils.prune as prune
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nnw.layers import weight_layers
from nnw.modifications import (
    MODIFICATIONS,
    GaussianNoise,
    MagnitudePruning,
    Modification,
    ModificationContext,
    Quantization,
    RandomPruning,
    layer_generator,
    kth_smallest,
    make_modification,
    parse_modification,
    prune_count,
    quantize_tensor,
    register,
    smallest_k_mask,
)
from nnw.modifications.pruning import SCOPES

HYP = settings(deadline=None, max_examples=25)


class SmallCNN(nn.Module):
    """Conv-BN-ReLU-Conv-ReLU-Pool-Linear on 3x8x8 inputs (about 3.9k weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        return self.fc(x.flatten(1))


def make_cnn(seed: int = 0, dtype: torch.dtype = torch.float32) -> SmallCNN:
    """A SmallCNN with every parameter and BN buffer drawn from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    model = SmallCNN()
    with torch.no_grad():
        for p in model.parameters():  # fan-in scaled, so layers differ in magnitude
            scale = p[0].numel() ** -0.5 if p.dim() > 1 else 1.0
            p.copy_(scale * torch.randn(p.shape, generator=g))
        model.bn1.running_mean.copy_(torch.randn(8, generator=g))
        model.bn1.running_var.copy_(torch.rand(8, generator=g) + 0.5)
    return model.to(dtype)


LAYER_NAMES = list(weight_layers(make_cnn()))
PRUNABLE = lambda m: [(m.conv1, "weight"), (m.conv2, "weight"), (m.fc, "weight")]  # noqa: E731


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached weight layers (``nnw.layers.weight_layers``) for value checks."""
    return {n: w.detach() for n, w in weight_layers(model).items()}


def state_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[k].dtype == sb[k].dtype and torch.equal(sa[k], sb[k]) for k in sa
    )


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


# --- hypothesis strategies ----------------------------------------------------------------
layers_st = st.none() | st.lists(st.sampled_from(LAYER_NAMES), min_size=1, max_size=3, unique=True)
percent_st = st.integers(0, 100) | st.floats(0, 100, allow_nan=False)
modification_st = st.one_of(
    st.builds(GaussianNoise, S=st.floats(0, 1, allow_nan=False), layers=layers_st),
    st.builds(MagnitudePruning, P=percent_st, scope=st.sampled_from(SCOPES), layers=layers_st),
    st.builds(RandomPruning, P=percent_st, layers=layers_st),
    st.builds(Quantization, B=st.integers(2, 32), layers=layers_st),
)


# --- registry, names, parsing ---------------------------------------------------------------
def test_registry_holds_weight_space_families() -> None:
    assert {"noise", "pruning", "random_pruning", "quantization"} <= set(MODIFICATIONS)
    assert MODIFICATIONS["pruning"] is MagnitudePruning
    assert all(not cls.needs_training for cls in MODIFICATIONS.values()
               if cls.family in {"noise", "pruning", "random_pruning", "quantization"})


@pytest.mark.parametrize(
    ("mod", "name", "ident"),
    [
        (MagnitudePruning(50), "pruning(P=50)", "pruning-P50"),
        (MagnitudePruning(12.5, scope="layer"), "pruning(P=12.5,scope=layer)", "pruning-P12.5-scope=layer"),
        (GaussianNoise(0.01), "noise(S=0.01)", "noise-S0.01"),
        (GaussianNoise(1), "noise(S=1)", "noise-S1"),
        (GaussianNoise(0.1, layers=["conv1.weight", "fc.weight"]),
         "noise(S=0.1,layers=conv1.weight+fc.weight)", "noise-S0.1-layers=conv1.weight+fc.weight"),
        (Quantization(8), "quantization(B=8)", "quantization-B8"),
        (RandomPruning(5), "random_pruning(P=5)", "random_pruning-P5"),
    ],
)
def test_name_and_id(mod: Modification, name: str, ident: str) -> None:
    assert mod.name == name
    assert mod.id == ident
    assert parse_modification(name) == mod


def test_make_modification_and_params() -> None:
    mod = make_modification("pruning", P=30, scope="layer")
    assert isinstance(mod, MagnitudePruning)
    assert mod.params == {"P": 30.0, "scope": "layer"}
    assert list(Quantization(4).params) == ["B"]
    with pytest.raises(ValueError, match=r"unknown Modification family 'prunning'.*'pruning'"):
        make_modification("prunning", P=30)


@pytest.mark.parametrize(
    "text",
    ["pruning", "pruning(P50)", "pruning(P=50,P=60)", "pruning(Q=50)", "nope(P=1)", "pruning(P=)"],
)
def test_parse_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        parse_modification(text)


@given(mod=modification_st)
@HYP
def test_parse_round_trip(mod: Modification) -> None:
    again = parse_modification(mod.name)
    assert again == mod
    assert again.name == mod.name and again.id == mod.id
    assert again.params == mod.params and again.layers == mod.layers
    assert hash(again) == hash(mod)


def test_register_rejects_conflicting_family() -> None:
    class Impostor(Modification):
        family = "pruning"

        def _modify(self, model, *, seed, context):  # pragma: no cover - never applied
            return None

    with pytest.raises(ValueError, match="already registered"):
        register(Impostor)
    assert MODIFICATIONS["pruning"] is MagnitudePruning


def test_training_based_modification_requires_context() -> None:
    class Resume(Modification):  # not registered: only exercises the base class
        family = "finetuning"
        needs_training = True

        def __init__(self, E: int) -> None:
            super().__init__({"E": E})

        def _modify(self, model, *, seed, context):
            return context.train(model)

    model = make_cnn()
    with pytest.raises(ValueError, match="training-based.*ModificationContext"):
        Resume(1).apply(model)
    marker = nn.Linear(1, 1)
    out = Resume(1).apply(model, context=ModificationContext(train=lambda m: marker))
    assert out is marker
    assert Resume(2).name == "finetuning(E=2)"


# --- parameter validation -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: GaussianNoise(-0.1), r"expected S .*>= 0, got -0\.1"),
        (lambda: GaussianNoise(float("nan")), r"expected S .*finite.*got nan"),
        (lambda: GaussianNoise(float("inf")), r"expected S .*finite"),
        (lambda: GaussianNoise("0.1"), r"expected S .*real number"),
        (lambda: Quantization(1), r"expected B .*in \[2, 32\], got 1"),
        (lambda: Quantization(33), r"expected B .*in \[2, 32\], got 33"),
        (lambda: Quantization(8.5), r"expected B .*integer.*got 8\.5"),
        (lambda: Quantization(8.0), r"expected B .*integer.*got 8\.0"),
        (lambda: Quantization(True), r"expected B .*integer"),
        (lambda: MagnitudePruning(-1), r"expected P .*in \[0, 100\], got -1"),
        (lambda: MagnitudePruning(100.5), r"expected P .*in \[0, 100\], got 100\.5"),
        (lambda: MagnitudePruning(50, scope="model"), r"expected scope to be one of \['global', 'layer'\]"),
        (lambda: RandomPruning(101), r"expected P .*in \[0, 100\], got 101"),
        (lambda: GaussianNoise(0.1, layers=[]), r"at least one layer"),
        (lambda: GaussianNoise(0.1, layers=["a,b"]), r"layer names"),
        (lambda: parse_modification("quantization(B=40)"), r"expected B .*in \[2, 32\], got 40"),
    ],
)
def test_bad_parameters_rejected(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize(
    "mod",
    [GaussianNoise(0.1, layers=["conv9.weight"]), MagnitudePruning(10, layers=["bn1.weight"]),
     RandomPruning(10, layers=["fc.bias"]), Quantization(8, layers=["conv1.weight", "nope"])],
)
def test_unknown_layer_names_rejected(mod: Modification) -> None:
    model = make_cnn()
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"unknown weight layer name.*conv1\.weight"):
        mod.apply(model)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_apply_rejects_bad_seed_and_model() -> None:
    with pytest.raises(ValueError, match="integer seed"):
        GaussianNoise(0.1).apply(make_cnn(), seed=1.5)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        GaussianNoise(0.1).apply({"w": torch.zeros(3)})


# --- magnitude pruning vs torch.nn.utils.prune -----------------------------------------------
@pytest.mark.parametrize("P", [0, 1, 10, 33.3, 50, 75, 90, 99.9, 100])
def test_layer_pruning_matches_torch_l1_unstructured(P: float) -> None:
    model = make_cnn(1)
    ours = MagnitudePruning(P, scope="layer").apply(model)
    ref = copy.deepcopy(model)
    for module, name in PRUNABLE(ref):
        prune.l1_unstructured(module, name, amount=P / 100)
    masks = MagnitudePruning(P, scope="layer").masks(weight_layers(model))
    for (module, _), lname in zip(PRUNABLE(ref), LAYER_NAMES):
        assert torch.equal(masks[lname], module.weight_mask == 0), lname
        prune.remove(module, "weight")
    assert state_equal(ours, ref)


@pytest.mark.parametrize("P", [0, 1, 10, 33.3, 50, 75, 90, 99.9, 100])
def test_global_pruning_matches_torch_global_unstructured(P: float) -> None:
    model = make_cnn(2)
    ours = MagnitudePruning(P).apply(model)
    ref = copy.deepcopy(model)
    prune.global_unstructured(PRUNABLE(ref), pruning_method=prune.L1Unstructured, amount=P / 100)
    masks = MagnitudePruning(P).masks(weight_layers(model))
    for (module, _), lname in zip(PRUNABLE(ref), LAYER_NAMES):
        assert torch.equal(masks[lname], module.weight_mask == 0), lname
        prune.remove(module, "weight")
    assert state_equal(ours, ref)
    # Global and per-layer pruning differ in general (different layer shares).
    if 0 < P < 100:
        assert not state_equal(ours, MagnitudePruning(P, scope="layer").apply(model))


def test_pruning_is_exact_with_ties() -> None:
    values = torch.tensor([3.0, 1.0, -1.0, 2.0, 1.0, -3.0, 1.0, 0.5])
    mask = smallest_k_mask(values.abs(), 3)  # 0.5 plus the first two of the four |1.0|
    assert mask.tolist() == [False, True, True, False, False, False, False, True]
    layer = nn.Linear(8, 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(values.view(1, 8))
    pruned = MagnitudePruning(50).apply(nn.Sequential(layer))
    assert int((pruned[0].weight == 0).sum()) == 4
    assert pruned[0].weight.flatten().tolist() == [3.0, 0.0, 0.0, 2.0, 0.0, -3.0, 1.0, 0.0]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_kth_smallest_equals_torch_kthvalue(dtype: torch.dtype) -> None:
    values = torch.randn(5001, generator=torch.Generator().manual_seed(8)).abs().to(dtype)
    for k in (1, 2, 1000, 2500, 5000):
        assert torch.equal(kth_smallest(values, k), torch.kthvalue(values, k).values)


def test_prune_count_follows_torch_rounding() -> None:
    assert prune_count(50, 5) == 2  # round(2.5) = 2 (half to even), as torch
    assert prune_count(50, 7) == 4  # round(3.5) = 4
    for P in (0, 12.5, 33.3, 100):
        for n in (1, 7, 216, 2560):
            assert prune_count(P, n) == prune._compute_nparams_toprune(P / 100, n)


@given(P=percent_st, scope=st.sampled_from(SCOPES), layers=layers_st, seed=st.integers(0, 3))
@HYP
def test_magnitude_pruning_count(P: float, scope: str, layers: list[str] | None, seed: int) -> None:
    model = make_cnn(seed)
    out = MagnitudePruning(P, scope=scope, layers=layers).apply(model)
    selected = layers or LAYER_NAMES
    after = weights(out)
    if scope == "global":
        n = sum(after[name].numel() for name in selected)
        assert sum(int((after[name] == 0).sum()) for name in selected) == prune_count(P, n)
    else:
        for name in selected:
            assert int((after[name] == 0).sum()) == prune_count(P, after[name].numel())
    # Survivors keep their values; the pruned ones are the smallest in magnitude.
    before = weights(model)
    kept = torch.cat([before[n][after[n] != 0].abs() for n in selected])
    for name in LAYER_NAMES:
        w0, w1 = before[name], after[name]
        assert torch.equal(w1[w1 != 0], w0[w1 != 0])
        if name not in selected:
            assert torch.equal(w0, w1)
        elif scope == "global" and kept.numel() and bool((w1 == 0).any()):
            assert float(w0[w1 == 0].abs().max()) <= float(kept.min())


@given(P=percent_st, layers=layers_st, seed=st.integers(0, 2**31 - 1))
@HYP
def test_random_pruning_count(P: float, layers: list[str] | None, seed: int) -> None:
    out = RandomPruning(P, layers=layers).apply(make_cnn(), seed=seed)
    for name, w in weight_layers(out).items():
        expected = prune_count(P, w.numel()) if name in (layers or LAYER_NAMES) else 0
        assert int((w == 0).sum()) == expected, name


def test_random_pruning_is_spread_uniformly() -> None:
    layer = nn.Linear(1000, 1000, bias=False)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    out = RandomPruning(10).apply(nn.Sequential(layer), seed=7)
    zeros = (out[0].weight == 0).float()
    # 100 000 of 1 000 000 zeroed; each row holds Binomial-like ~100 +- 10 zeros.
    assert int(zeros.sum()) == 100_000
    per_row = zeros.sum(dim=1)
    assert 50 < float(per_row.min()) and float(per_row.max()) < 150
    assert abs(float(zeros[:, :500].sum()) - 50_000) < 1_000


# --- quantization -------------------------------------------------------------------------
@pytest.mark.parametrize("B", [2, 3, 4, 8, 12])
def test_quantization_levels_exact_on_linspace(B: int) -> None:
    w = torch.linspace(-1.5, 2.5, 2**B * 8 + 1, dtype=torch.float64)
    q = quantize_tensor(w, B)
    levels = torch.unique(q)
    assert levels.numel() == 2**B
    step = 4.0 / (2**B - 1)
    assert float((q - w).abs().max()) <= step / 2 * (1 + 1e-9)
    assert torch.allclose(levels, torch.linspace(-1.5, 2.5, 2**B, dtype=torch.float64), atol=1e-12)


@pytest.mark.parametrize("B", [2, 4, 8, 16, 32])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_quantization_model_levels_and_error(B: int, dtype: torch.dtype) -> None:
    model = make_cnn(3, dtype)
    out = Quantization(B).apply(model)
    for name, w1 in weights(out).items():
        w0 = weights(model)[name]
        assert w1.dtype == dtype
        assert torch.unique(w1).numel() <= min(2**B, w0.numel())
        lo, hi = float(w0.min()), float(w0.max())
        step = (hi - lo) / (2**B - 1)
        cast = torch.finfo(dtype).eps * max(abs(lo), abs(hi))
        assert float((w1 - w0).abs().max()) <= step / 2 * (1 + 1e-9) + cast, name
        assert float(w1.min()) >= lo - cast and float(w1.max()) <= hi + cast
    # Biases and BatchNorm are not weight layers: untouched.
    assert torch.equal(out.fc.bias, model.fc.bias) and torch.equal(out.bn1.weight, model.bn1.weight)


def test_quantization_constant_tensor_unchanged() -> None:
    w = torch.full((4, 5), 0.37)
    assert torch.equal(quantize_tensor(w, 2), w)
    with pytest.raises(ValueError, match=r"expected B .*in \[2, 32\]"):
        quantize_tensor(w, 1)


# --- Gaussian noise -----------------------------------------------------------------------
@pytest.mark.parametrize("S", [0.01, 0.1, 1.0])
def test_noise_std_matches_ratio(S: float) -> None:
    layer = nn.Linear(1000, 1000)
    with torch.no_grad():
        layer.weight.copy_(3.0 * torch.randn(1000, 1000, generator=torch.Generator().manual_seed(5)))
    model = nn.Sequential(layer)
    out = GaussianNoise(S).apply(model, seed=11)
    w0 = model[0].weight.detach().double()
    delta = (out[0].weight.detach().double() - w0) / w0.std()
    n = delta.numel()
    # Sample std of n normal draws: relative sampling error ~ 1/sqrt(2n) = 0.07 %.
    assert float(delta.std()) == pytest.approx(S, rel=6 / math.sqrt(2 * n))
    assert abs(float(delta.mean())) < 6 * S / math.sqrt(n)
    assert torch.equal(out[0].bias, model[0].bias)


def test_noise_draw_is_per_layer_and_seeded() -> None:
    model = make_cnn(4)
    S, seed = 0.05, 3
    full = GaussianNoise(S).apply(model, seed=seed)
    only_fc = GaussianNoise(S, layers=["fc.weight"]).apply(model, seed=seed)
    w0 = model.fc.weight.detach()
    draw = torch.randn(w0.shape, generator=layer_generator(seed, "fc.weight"))
    expected = w0.add(draw, alpha=S * float(w0.std()))
    assert torch.equal(full.fc.weight, expected)
    assert torch.equal(only_fc.fc.weight, full.fc.weight)  # same draw whatever else is selected
    assert torch.equal(only_fc.conv1.weight, model.conv1.weight)
    assert not torch.equal(full.conv1.weight, model.conv1.weight)


def test_noise_zero_ratio_is_identity() -> None:
    model = make_cnn()
    assert state_equal(GaussianNoise(0).apply(model, seed=9), model)


# --- properties common to every Modification ------------------------------------------------
@given(mod=modification_st, seed=st.integers(0, 2**31 - 1))
@HYP
def test_input_model_never_altered(mod: Modification, seed: int) -> None:
    model = make_cnn(seed % 5)
    before = snapshot(model)
    out = mod.apply(model, seed=seed)
    assert out is not model
    after = model.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())
    out_ptrs = {p.data_ptr() for p in out.parameters()}
    assert not out_ptrs & {p.data_ptr() for p in model.parameters()}


@given(mod=modification_st, seed=st.integers(0, 2**31 - 2))
@HYP
def test_deterministic_under_seed(mod: Modification, seed: int) -> None:
    model = make_cnn()
    a, b = mod.apply(model, seed=seed), mod.apply(model, seed=seed)
    assert state_equal(a, b)
    c = mod.apply(model, seed=seed + 1)
    if isinstance(mod, GaussianNoise):
        if mod.S >= 1e-6:  # smaller ratios may vanish below float32 resolution
            assert not state_equal(a, c)
    elif isinstance(mod, RandomPruning):
        counts = [(prune_count(mod.P, w.numel()), w.numel()) for w in mod.select_layers(model).values()]
        assert state_equal(a, c) == all(k in (0, n) for k, n in counts)
    else:  # magnitude pruning and quantization do not depend on the seed
        assert state_equal(a, c)


def test_layer_selection_limits_changes() -> None:
    model = make_cnn()
    out = Quantization(4, layers=["conv2.weight"]).apply(model)
    changed = {n for n in LAYER_NAMES if not torch.equal(weights(out)[n], weights(model)[n])}
    assert changed == {"conv2.weight"}
    assert re.fullmatch(r"quantization\(B=4,layers=conv2\.weight\)", Quantization(4, layers="conv2.weight").name)


def test_cache_id_marks_a_changed_procedure_behind_the_same_name():
    """Caches key Modified models and their evaluations by ``cache_id``: a Modification whose
    procedure changed under an unchanged name (Watermark Overwriting, procedure 2) gets new entries."""
    assert make_modification("noise", S=0.01).cache_id == "noise(S=0.01)"
    ow = make_modification("overwriting", k=4)
    assert ow.name == "overwriting(k=4)" and ow.cache_id == "overwriting(k=4)#2"
    assert make_modification("overwriting", k=4, E=1, until="epochs").name == "overwriting(k=4,E=1,until=epochs)"
