"""Tests of the method protocol, key files, the registry and NCT / RTW / TBW (NNW-TEC §7.2–§7.4).

In-training insertion is driven by a tiny local loop calling the hooks in the order documented
in :mod:`nnw.hooks` (independent of nnw.training).
"""
from __future__ import annotations

import copy
import json
import os
import pickle
import tempfile
from collections.abc import Callable, Iterable

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from scipy import stats
from torch import nn

from nnw.hooks import TrainContext, TrainingHook
from nnw.layers import weight_layers
from nnw.methods import registry
from nnw.methods.base import Detection, Key, KeyMismatchError, Tags, TraceabilityMethod
from nnw.methods.keys import KeyFileError, load_key, model_signature, save_key
from nnw.methods.nct import NCT, deobfuscate, obfuscate, select_indices
from nnw.methods.rtw import RTW
from nnw.methods.tbw import TBW
from nnw.models import build_model
from nnw.payload import encode_payload

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# --------------------------------------------------------------------------- helpers
def resnet8(seed: int = 0) -> nn.Module:
    return build_model("ResNet8", seed=seed, width=0.5)


def tiny_cnn(seed: int = 0, num_classes: int = 10) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 4 * 4, num_classes),
        )


def flat_weights(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in weight_layers(model).values()])


def local_train(
    model: nn.Module,
    hooks: Iterable[TrainingHook],
    *,
    epochs: int = 1,
    steps_per_epoch: int = 10,
    batch: int = 8,
    shape: tuple[int, int, int] = (3, 16, 16),
    lr: float = 0.01,
    adam: bool = False,
    seed: int = 0,
    before_step: Callable[[int], None] | None = None,
) -> TrainContext:
    """A few optimizer steps on random data, calling the hooks in nnw.hooks' documented order."""
    hooks = list(hooks)
    g = torch.Generator().manual_seed(seed)
    opt = (torch.optim.Adam(model.parameters(), lr=lr) if adam
           else torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9))
    ctx = TrainContext(device=torch.device("cpu"), epochs=epochs, steps_per_epoch=steps_per_epoch, seed=seed)
    model.train()
    for h in hooks:
        h.on_train_start(model, ctx)
    for epoch in range(epochs):
        ctx.epoch = epoch
        for h in hooks:
            h.on_epoch_start(model, epoch, ctx)
        for _ in range(steps_per_epoch):
            if before_step is not None:
                before_step(ctx.step)
            x = torch.rand(batch, *shape, generator=g)
            y = torch.randint(0, 10, (batch,), generator=g)
            for h in hooks:
                extra = h.extra_batch(ctx)
                if extra is not None:
                    x, y = torch.cat([x, extra[0]]), torch.cat([y, extra[1]])
            loss = F.cross_entropy(model(x), y)
            for h in hooks:
                extra_loss = h.extra_loss(model, ctx)
                if extra_loss is not None:
                    loss = loss + extra_loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            for h in hooks:
                h.after_step(model, ctx)
            ctx.step += 1
        for h in hooks:
            h.on_epoch_end(model, epoch, ctx)
    for h in hooks:
        h.on_train_end(model, ctx)
    return ctx




@pytest.fixture(scope="module")
def base_model() -> nn.Module:
    return resnet8(0)


# --------------------------------------------------------------------------- protocol
def test_tags_are_validated() -> None:
    with pytest.raises(ValueError, match="kind"):
        Tags("watermark", "in-training", True, False, False, False, frozenset({"classification"}))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tasks"):
        Tags("active", "in-training", True, False, False, False, frozenset({"speech"}))
    with pytest.raises(ValueError, match="insertion"):
        Tags("active", "none", True, False, False, False, frozenset({"classification"}))
    assert NCT.tags.fingerprints and NCT.tags.multi_mark and not NCT.tags.decodes
    assert RTW.tags.decodes and TBW.tags.tasks == frozenset({"classification"})


# --------------------------------------------------------------------------- NCT: key
@settings(deadline=None, max_examples=30)
@given(
    indices=st.lists(st.integers(0, 2**40), max_size=300, unique=True),
    key_seed=st.integers(0, 2**63 - 1),
)
def test_nct_obfuscation_is_invertible_and_hides_indices(indices: list[int], key_seed: int) -> None:
    i = torch.tensor(indices, dtype=torch.int64)
    k = obfuscate(i, key_seed)
    assert k.dtype == torch.int64 and k.shape == i.shape
    assert torch.equal(deobfuscate(k, key_seed), i)
    assert not torch.isin(k, i).any()  # no raw index appears in K
    if len(indices) >= 2:
        assert not torch.equal(deobfuscate(k, key_seed ^ 1), i)


def test_nct_selection_is_seeded_distinct_and_in_range() -> None:
    for total, n in [(1000, 900), (10**6, 5000), (64, 64)]:  # both sampling branches
        a = select_indices(total, n, seed=7)
        assert torch.equal(a, select_indices(total, n, seed=7))
        assert not torch.equal(a, select_indices(total, n, seed=8))
        assert a.numel() == n and torch.unique(a).numel() == n
        assert int(a.min()) >= 0 and int(a.max()) < total
    with pytest.raises(ValueError, match="exceeds"):
        select_indices(100, 101, seed=0)
    # draws are uniform over the index space (chi-square over 10 bins)
    counts = torch.bincount(select_indices(10**6, 20000, seed=3) // 10**5, minlength=10)
    assert stats.chisquare(counts.numpy()).pvalue > 1e-4


@settings(deadline=None, max_examples=20)
@given(
    # from 16: with 3 positions in 3 layers the within-layer ranks carry nothing (each layer's
    # single value has quantile 1/2), so no detection is possible by the declared reading
    n=st.integers(16, 2000),
    mode=st.sampled_from(["watermark", "fingerprint"]),
    alpha=st.integers(0, 100),
    actor=st.integers(0, 5),
    seed=st.integers(0, 2**31),
    inserted=st.booleans(),
)
def test_nct_key_file_round_trip(n: int, mode: str, alpha: int, actor: int, seed: int, inserted: bool) -> None:
    model = tiny_cnn(0)
    method = NCT()
    key = method.keygen(model, seed=seed, config={"N": n, "mode": mode, "alpha": alpha, "actor": actor})
    marked = method.embed(model, key) if inserted else None
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "sub", "nct.key")
        save_key(path, key)
        loaded = load_key(path)
        with safe_open(path, framework="pt") as f:
            stored = set(f.keys())
    assert loaded == key
    assert loaded.cache == {}
    assert stored == ({"K", "original"} if inserted else {"K"})  # raw indices never saved
    assert torch.equal(method.indices(loaded), method.indices(key))
    if marked is not None:
        assert method.detect(marked, loaded).present
    else:
        with pytest.raises(ValueError, match="no Original Traceability Data"):
            method.detect(model, loaded)


def test_rtw_and_tbw_key_round_trip(base_model: nn.Module) -> None:
    for method in (RTW(), TBW()):
        key = method.keygen(base_model, seed=5)
        with tempfile.TemporaryDirectory() as d:
            save_key(os.path.join(d, "k"), key)
            assert load_key(os.path.join(d, "k")) == key


def test_key_file_errors_name_the_file(base_model: nn.Module) -> None:
    with tempfile.TemporaryDirectory() as d:
        missing = os.path.join(d, "missing.key")
        with pytest.raises(KeyFileError, match="missing.key"):
            load_key(missing)
        corrupt = os.path.join(d, "corrupt.key")
        with open(corrupt, "wb") as f:
            f.write(b"\x00\x01 not a safetensors file")
        with pytest.raises(KeyFileError, match="corrupt.key"):
            load_key(corrupt)
        foreign = os.path.join(d, "foreign.key")
        from safetensors.torch import save_file
        save_file({"w": torch.zeros(3)}, foreign)
        with pytest.raises(KeyFileError, match="not an nnw key"):
            load_key(foreign)
        bad_config = Key("NCT", {"x": torch.zeros(1)}, {}, {})
        with pytest.raises(TypeError, match="JSON"):
            save_key(os.path.join(d, "bad.key"), bad_config)
        assert sorted(os.listdir(d)) == ["corrupt.key", "foreign.key"]  # nothing half-written left behind


def test_key_copies_drop_the_runtime_cache(base_model: nn.Module) -> None:
    method = NCT()
    key = method.keygen(base_model, seed=1)
    method.embed(base_model, key)
    assert key.cache  # indices, plan, bindings
    for clone in (copy.deepcopy(key), key.copy(), pickle.loads(pickle.dumps(key))):
        assert clone == key and clone.cache == {}
        assert method.detect(method.embed(base_model, method.keygen(base_model, seed=1)), clone).present
    tampered = key.copy()
    tampered.config["key_seed"] ^= 1
    with pytest.raises(KeyMismatchError, match="wrong key_seed"):
        method.extract(base_model, tampered)


def test_model_signature_tracks_architecture_not_values() -> None:
    a, b = resnet8(0), resnet8(1)
    assert model_signature(a) == model_signature(b)
    assert model_signature(a) != model_signature(build_model("ResNet8", seed=0, width=0.25))
    json.dumps(model_signature(a))


# --------------------------------------------------------------------------- NCT: insertion
def test_nct_watermark_changes_only_theta_I_and_preserves_layer_multisets(base_model: nn.Module) -> None:
    method = NCT()
    before = copy.deepcopy(base_model.state_dict())
    key = method.keygen(base_model, seed=11, config={"N": 2000})
    marked = method.embed(base_model, key)
    # the input model is untouched
    assert all(torch.equal(before[k], v) for k, v in base_model.state_dict().items())
    idx = method.indices(key)
    flat0, flat1 = flat_weights(base_model), flat_weights(marked)
    outside = torch.ones(flat0.numel(), dtype=torch.bool)
    outside[idx] = False
    assert torch.equal(flat0[outside], flat1[outside])
    assert (flat0[idx] != flat1[idx]).float().mean() > 0.9  # the mark moved nearly all of θ_I
    assert torch.equal(flat1[idx], key.tensors["original"])
    wl = set(weight_layers(base_model))
    for name, t in marked.state_dict().items():
        if name not in wl:
            assert torch.equal(t, before[name]), name
        else:
            assert torch.equal(torch.sort(t.reshape(-1)).values, torch.sort(before[name].reshape(-1)).values), name
    det = method.detect(marked, key)
    assert det.present and det.score == pytest.approx(1.0) and det.p_value < 0.05
    assert set(det.details) >= {"rho", "p_value", "critical_value", "pearson", "n"}
    assert det.threshold == det.details["critical_value"] and det.details["n"] == 2000
    with pytest.raises(ValueError, match="already holds"):
        method.embed(base_model, key)


def test_nct_on_channels_last_weights() -> None:
    method = NCT()
    model = tiny_cnn(0).to(memory_format=torch.channels_last)
    assert not next(iter(weight_layers(model).values())).is_contiguous()
    key = method.keygen(model, seed=0, config={"N": 600})
    marked = method.embed(model, key)
    idx = method.indices(key)
    flat0, flat1 = flat_weights(model), flat_weights(marked)
    outside = torch.ones(flat0.numel(), dtype=torch.bool)
    outside[idx] = False
    assert torch.equal(flat0[outside], flat1[outside]) and torch.equal(flat1[idx], key.tensors["original"])
    assert method.detect(marked, key).present and not method.detect(model, key).present


def test_nct_false_alarms_consistent_with_alpha(base_model: nn.Module) -> None:
    method = NCT()
    other = resnet8(1)  # an independently initialised, unmarked model
    alarms = {"parent": 0, "other_model": 0, "other_key": 0}
    p_values: list[float] = []
    for seed in range(40):
        key = method.keygen(base_model, seed=seed)
        marked = method.embed(base_model, key)
        assert method.detect(marked, key).present
        other_key = method.keygen(base_model, seed=1000 + seed)
        method.embed(base_model, other_key)  # inserted elsewhere, read on `marked`
        for name, det in (("parent", method.detect(base_model, key)),
                          ("other_model", method.detect(other, key)),
                          ("other_key", method.detect(marked, other_key))):
            alarms[name] += det.present
            p_values.append(det.p_value)
    assert all(v <= 6 for v in alarms.values()), alarms
    # under H0 the p-values are uniform (a broken detector would pile them up at 0 or 1)
    assert stats.kstest(p_values, "uniform").pvalue > 1e-3


def test_nct_multiple_marks_and_overwriting(base_model: nn.Module) -> None:
    method = NCT()
    n = 512
    first = method.keygen(base_model, seed=1, config={"N": n})
    for q in (0.0, 0.25, 0.5, 1.0):
        second = method.keygen(base_model, seed=2, config={"N": n, "overlap_with": first, "overlap": q})
        shared = torch.isin(method.indices(second), method.indices(first)).sum()
        assert int(shared) == round(q * n) == second.config["n_shared"]
        assert torch.unique(method.indices(second)).numel() == n
    # five Actors' marks at disjoint positions all coexist (§7.2.6)
    keys, model = [], base_model
    for actor in range(5):
        k = method.keygen(model, seed=100 + actor, config={"actor": actor, "overlap_with": keys[-1] if keys else None,
                                                        "overlap": 0.0 if keys else None})
        model = method.embed(model, k)
        keys.append(k)
    assert all(method.detect(model, k).present for k in keys)
    # full overwriting of the first mark's positions destroys it; none leaves it intact
    m1 = method.embed(base_model, first)
    full = method.keygen(base_model, seed=3, config={"N": n, "overlap_with": first, "overlap": 1.0})
    assert not method.detect(method.embed(m1, full), first).present
    none = method.keygen(base_model, seed=4, config={"N": n, "overlap_with": first, "overlap": 0.0})
    assert method.detect(method.embed(m1, none), first).score == pytest.approx(1.0)
    with pytest.raises(ValueError, match="overlap_with"):
        method.keygen(base_model, seed=5, config={"overlap": 0.5})


def test_nct_fingerprint_mode_extract_and_match() -> None:
    method = NCT()
    models = {f"m{i}": tiny_cnn(i) for i in range(3)}
    key = method.keygen(models["m0"], seed=9, config={"mode": "fingerprint", "N": 256})
    database = {}
    for name, m in models.items():
        k = method.keygen(m, seed=9, config={"mode": "fingerprint", "N": 256})
        unchanged = method.embed(m, k)
        assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), unchanged.state_dict().values()))
        assert torch.equal(method.extract(m, k), k.tensors["original"])
        database[name] = method.extract(m, key)
    name, rho = method.match(method.extract(models["m1"], key), database)
    assert name == "m1" and rho == pytest.approx(1.0)
    stranger, rho = method.match(method.extract(tiny_cnn(7), key), database)
    assert stranger is None and rho < 0.3
    assert method.match(database["m0"], {})[0] is None


def test_nct_hook_alpha0_inserts_before_the_first_step() -> None:
    method = NCT()
    model = tiny_cnn(0)
    key = method.keygen(model, seed=2, config={"N": 1000, "alpha": 0})
    hook = method.training_hook(key)
    seen: dict[str, torch.Tensor] = {}

    def before_step(step: int) -> None:
        if step == 0:
            assert "original" in key.tensors  # inserted before any optimizer step
            seen["theta"] = method.extract(model, key)

    init = method.extract(model, key)
    local_train(model, [hook], epochs=2, steps_per_epoch=5, before_step=before_step)
    assert hook.inserted_at_step == 0 and hook.inserted_at_epoch == 0 and hook.key is key
    assert torch.equal(seen["theta"], key.tensors["original"])
    assert not torch.equal(init, key.tensors["original"])
    assert method.detect(model, key).present  # survives the training steps after insertion


def test_nct_hook_alpha_later_epoch_and_not_reached() -> None:
    method = NCT()
    model = tiny_cnn(0)
    key = method.keygen(model, seed=2, config={"alpha": 1})
    hook = method.training_hook(key)
    local_train(model, [hook], epochs=2, steps_per_epoch=4)
    assert hook.inserted_at_epoch == 1 and hook.inserted_at_step == 4
    assert method.detect(model, key).present
    late = method.keygen(model, seed=3, config={"alpha": 5})
    with pytest.raises(ValueError, match="beyond"):
        local_train(model, [method.training_hook(late)], epochs=2, steps_per_epoch=1)


# --------------------------------------------------------------------------- key mismatch
def test_key_mismatch_errors(base_model: nn.Module) -> None:
    vgg = build_model("VGG16", seed=0, width=0.125)
    nct, rtw, tbw = NCT(), RTW(), TBW()
    nct_key = nct.keygen(base_model, seed=0)
    with pytest.raises(KeyMismatchError, match="lacks weight layer"):
        nct.detect(vgg, nct_key)
    with pytest.raises(KeyMismatchError, match="has shape"):
        nct.embed(build_model("ResNet8", seed=0, width=0.25), nct_key)
    rtw_key = rtw.keygen(base_model, seed=0)
    with pytest.raises(KeyMismatchError, match=rtw_key.config["layer"]):
        rtw.decode(vgg, rtw_key)
    with pytest.raises(KeyMismatchError, match="length"):
        rtw.check_key(build_model("ResNet8", seed=0, width=0.25), rtw_key)
    with pytest.raises(KeyMismatchError, match="'RTW' key"):
        nct.detect(base_model, rtw_key)
    tbw_key = tbw.keygen(base_model, seed=0)
    with pytest.raises(KeyMismatchError, match="10-class"):
        tbw.detect(resnet8_with_classes(5), tbw_key)


def resnet8_with_classes(num_classes: int) -> nn.Module:
    return build_model("ResNet8", seed=0, width=0.5, num_classes=num_classes)


# --------------------------------------------------------------------------- RTW
def test_rtw_in_training_insertion_decodes_the_actor() -> None:
    method = RTW()
    model = resnet8(3)
    key = method.keygen(model, seed=1, config={"lam": 1.0, "actor": 1234})
    assert torch.equal(key.tensors["b"], encode_payload(1234, 64))
    unmarked = copy.deepcopy(model)
    with pytest.raises(NotImplementedError):
        method.embed(model, key)
    local_train(model, [method.training_hook(key)], steps_per_epoch=200, batch=8)
    dec = method.decode(model, key)
    assert dec.ber == 0.0 and dec.actor_id == 1234 and dec.valid is True
    det = method.detect(model, key)
    assert det.present and det.score == 1.0 and det.p_value == pytest.approx(0.5**64)
    for probe, k in ((unmarked, key), (model, method.keygen(model, seed=2, config={"layer": key.config["layer"]}))):
        neg = method.detect(probe, k)
        assert not neg.present and neg.details["ber"] > 0.1 and neg.p_value > 1e-6
        assert method.decode(probe, k).actor_id is None


def test_rtw_key_generation() -> None:
    method = RTW()
    model = resnet8(0)
    a, b = method.keygen(model, seed=4), method.keygen(model, seed=4)
    assert a == b and a != method.keygen(model, seed=5)
    layer = weight_layers(model)[a.config["layer"]]
    assert layer.dim() == 4 and layer[0].numel() == a.config["M"] >= 64
    assert a.tensors["X"].shape == (a.config["M"], 64) and a.config["lam"] == 0.01
    x01 = method.keygen(model, seed=4, config={"key_type": "binary01"}).tensors["X"]
    xpm = method.keygen(model, seed=4, config={"key_type": "binary_pm1"}).tensors["X"]
    assert set(x01.unique().tolist()) == {0.0, 1.0} and set(xpm.unique().tolist()) == {-1.0, 1.0}
    rnd = method.keygen(model, seed=4, config={"T": 20})
    assert rnd.config["payload"] == "random" and rnd.tensors["b"].numel() == 20
    assert method.decode(model, rnd).actor_id is None
    with pytest.raises(ValueError, match="unknown RTW config"):
        method.keygen(model, seed=0, config={"lambda": 1})
    with pytest.raises(ValueError, match="not a weight layer"):
        method.keygen(model, seed=0, config={"layer": "nope.weight"})
    hook = method.training_hook(a)
    with pytest.raises(RuntimeError, match="on_train_start"):
        hook.extra_loss(model, TrainContext(device=torch.device("cpu"), epochs=1, steps_per_epoch=1))


# --------------------------------------------------------------------------- TBW
def test_tbw_in_training_insertion_and_detection() -> None:
    method = TBW()
    model = tiny_cnn(0)
    unmarked = tiny_cnn(0)
    key = method.keygen(model, seed=1, config={"shape": [3, 16, 16]})
    with pytest.raises(NotImplementedError):
        method.embed(model, key)
    local_train(model, [method.training_hook(key)], steps_per_epoch=300, batch=16, lr=3e-3, adam=True)
    det = method.detect(model, key)
    assert det.present and det.score > 0.4 and det.p_value < 1e-20
    assert det.details["matches"] == round(det.score * 100)
    for probe, k in ((unmarked, key), (model, method.keygen(model, seed=2, config={"shape": [3, 16, 16]}))):
        neg = method.detect(probe, k)
        assert not neg.present and neg.p_value > 1e-4
    # detection leaves the model's train/eval mode as it found it
    model.train()
    method.detect(model, key)
    assert all(m.training for m in model.modules())
    model.eval()
    method.detect(model, key)
    assert not any(m.training for m in model.modules())


def test_tbw_hook_cycles_through_the_trigger_set() -> None:
    method = TBW()
    key = method.keygen(tiny_cnn(0), seed=0, config={"n_triggers": 25, "rho": 10, "shape": [3, 8, 8]})
    hook = method.training_hook(key, prepare=lambda x: x.float() * 2)
    ctx = TrainContext(device=torch.device("cpu"), epochs=1, steps_per_epoch=5)
    hook.on_train_start(tiny_cnn(0), ctx)
    xs, ys = zip(*(hook.extra_batch(ctx) for _ in range(5)))
    x, y = torch.cat(xs), torch.cat(ys)
    assert x.shape == (50, 3, 8, 8) and x.dtype == torch.float32
    order = torch.arange(50) % 25
    assert torch.equal(x, key.tensors["triggers"].float()[order] * 2)
    assert torch.equal(y, key.tensors["labels"][order])


# --------------------------------------------------------------------------- registry
def test_registry_builtins_and_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    assert registry.available_methods()[:3] == ["NCT", "RTW", "TBW"]
    assert isinstance(registry.get_method("NCT"), NCT)
    assert isinstance(registry.get_method("rtw"), RTW)
    assert isinstance(registry.get_method("TBW"), TBW)
    for path in ("tests.plugin_method_example:ExampleMethod", "tests.plugin_method_example:make_example",
                 "tests.plugin_method_example:example_instance"):
        m = registry.get_method(path)
        assert isinstance(m, TraceabilityMethod) and m.name == "EXAMPLE"
    example = registry.get_method("tests.plugin_method_example:ExampleMethod")
    model = tiny_cnn(0)
    key = example.keygen(model, seed=0)
    assert isinstance(example.detect(model, key), Detection) and example.detect(model, key).present
    with pytest.raises(KeyMismatchError):
        example.check_key(resnet8(0), key)

    from importlib.metadata import EntryPoint

    eps = [EntryPoint(name="EXAMPLE_EP", value="tests.plugin_method_example:ExampleMethod", group="nnw.methods"),
           EntryPoint(name="BROKEN_EP", value="no_such_module_xyz:Foo", group="nnw.methods")]
    monkeypatch.setattr(registry, "entry_points", lambda group: [e for e in eps if e.group == group])
    assert "EXAMPLE_EP" in registry.available_methods()
    assert registry.get_method("EXAMPLE_EP").name == "EXAMPLE"
    with pytest.raises(registry.MethodLoadError, match="BROKEN_EP"):
        registry.get_method("BROKEN_EP")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("NOPE", "unknown traceability method 'NOPE'.*NCT"),
        ("no_such_module_xyz:Foo", "cannot import module 'no_such_module_xyz'"),
        ("tests.plugin_method_example:Missing", "has no attribute 'Missing'"),
        ("tests.plugin_method_example:NotAMethod", "does not subclass"),
        ("tests.plugin_method_example:broken_factory", "factory exploded"),
        ("tests.plugin_method_example:NOT_CALLABLE", "not a TraceabilityMethod"),
        ("a:b:c", "package.module:Object"),
    ],
)
def test_registry_errors(name: str, message: str) -> None:
    with pytest.raises(registry.MethodLoadError, match=message):
        registry.get_method(name)
    assert issubclass(registry.UnknownMethodError, registry.MethodLoadError)


# --------------------------------------------------------------------------- Traceability Data (§3)
def test_traceability_data_of_each_method() -> None:
    """RTW: the projections W_l X (their signs are the decoded bits); TBW: the trigger-set logits (their
    argmax is what Detection counts); NCT: the fingerprint θ_I. Equal on an identical copy, changed by
    the smallest noise."""
    model = resnet8(5)
    rtw, tbw, nct = RTW(), TBW(), NCT()
    assert rtw.tags.integrity and tbw.tags.integrity and nct.tags.integrity
    rkey = rtw.keygen(model, seed=3)
    proj = rtw.traceability_data(model, rkey)
    w = weight_layers(model)[rkey.config["layer"]].detach()
    assert proj.shape == (64,)
    torch.testing.assert_close(proj, w.flatten(1).mean(0) @ rkey.tensors["X"])  # eq. (5)'s W_l X by hand
    assert torch.equal((proj > 0).float(), rtw.decode(model, rkey).payload)
    tkey = tbw.keygen(model, seed=3)
    logits = tbw.traceability_data(model, tkey)
    assert logits.shape == (100, 10)
    share = int((logits.argmax(1) == tkey.tensors["labels"]).sum()) / 100
    assert share == tbw.detect(model, tkey).score
    nkey = nct.keygen(model, seed=3, config={"N": 64, "mode": "fingerprint"})
    assert torch.equal(nct.traceability_data(model, nkey), nct.extract(model, nkey))
    twin, noisy = copy.deepcopy(model), copy.deepcopy(model)
    with torch.no_grad():
        for p in noisy.parameters():
            p.add_(1e-3 * torch.randn_like(p))
    for method, key in ((rtw, rkey), (tbw, tkey), (nct, nkey)):
        ref = method.traceability_data(model, key)
        assert torch.equal(method.traceability_data(twin, key), ref), method.name
        assert not torch.equal(method.traceability_data(noisy, key), ref), method.name


def test_traceability_data_default_and_the_integrity_tag() -> None:
    class Plain(TraceabilityMethod):
        name, version = "Plain", "0"
        tags = Tags("active", "post-training", True, False, False, False, frozenset({"classification"}))

        def keygen(self, model, *, seed, config=None):
            return Key("Plain", {}, {}, {})

        def check_key(self, model, key):
            pass

        def detect(self, model, key, *, prepare=None):
            return Detection(False, 0.0, 1.0)

    assert Plain.tags.integrity is False  # optional tag: Tags written before it keep working
    with pytest.raises(NotImplementedError, match="no Traceability Data"):
        Plain().traceability_data(resnet8(), Key("Plain", {}, {}, {}))
    with pytest.raises(TypeError, match="integrity"):
        Tags("active", "post-training", True, False, False, False, frozenset({"classification"}), integrity="yes")


def test_rtw_key_config_can_be_given_back_to_keygen() -> None:
    """A Key records derived entries (M, payload); giving its config back to keygen (as Watermark
    Overwriting does for each further Actor) recomputes them instead of rejecting them."""
    rtw, model = RTW(), resnet8()
    key = rtw.keygen(model, seed=1, config={"actor": 7})
    assert {"M", "payload"} <= set(key.config)
    again = rtw.keygen(model, seed=1, config=key.config)
    assert again.config == key.config and again.tensors["X"].shape == key.tensors["X"].shape
    with pytest.raises(ValueError, match="unknown RTW config"):
        rtw.keygen(model, seed=1, config={**key.config, "lamda": 1})


def test_nct_reads_and_writes_the_current_weights_after_their_storage_moves() -> None:
    """CPU gather/scatter goes through numpy views of the weights; replacing a weight's storage
    (``p.data = ...``, as ``module.to(dtype)`` does) must not leave NCT reading the old memory."""
    nct, model = NCT(), resnet8(2)
    key = nct.keygen(model, seed=5, config={"N": 200, "mode": "fingerprint"})
    before = nct.extract(model, key)
    for p in weight_layers(model).values():
        p.data = p.data.clone() * 2.0
    torch.testing.assert_close(nct.extract(model, key), 2.0 * before)
    marked = nct.embed(model, key)
    assert nct.detect(marked, key).present
    half = copy.deepcopy(model).to(torch.bfloat16)  # other dtypes take the torch path
    key2 = nct.keygen(half, seed=6, config={"N": 200})
    assert nct.detect(nct.embed(half, key2), key2).present


# --------------------------------------------------------------------------- untrusted keys (issue 15)
def test_detection_rules_are_the_specs_data(monkeypatch: pytest.MonkeyPatch) -> None:
    """§7.2.5 Spearman one-sided at 5 %, §7.3.4 BER = 0, §7.4.4 share > 40 %: read from the spec's data
    file by the methods (change the data, the decision follows), never from a key."""
    import nnw.spec.tables as tables
    from nnw.methods.base import detection_rule

    spec = tables.load_spec_tables()
    rules = spec["detection_rules"]
    assert (rules["NCT"]["alpha"], rules["RTW"]["value"], rules["TBW"]["value"]) == (0.05, 0.0, 0.4)
    assert spec["thresholds"] == {"nct_alpha": rules["NCT"]["alpha"], "rtw_ber": rules["RTW"]["value"],
                                  "tbw_share": rules["TBW"]["value"]}  # the older summary agrees
    assert (rules["RTW"]["present_if"], rules["TBW"]["present_if"]) == ("<=", ">")
    model = tiny_cnn(0)
    tbw, rtw = TBW(), RTW()
    tkey = tbw.keygen(model, seed=1, config={"n_triggers": 20, "shape": [3, 16, 16]})
    rkey = rtw.keygen(model, seed=1, config={"T": 16})
    det = tbw.detect(model, tkey)
    assert det.threshold == 0.4 and det.present == (det.score > 0.4)
    altered = copy.deepcopy(dict(spec))
    altered["detection_rules"]["TBW"]["value"] = -1.0  # any share is "present" under this (fake) rule
    altered["detection_rules"]["RTW"]["value"] = 1.0  # any BER is "present"
    monkeypatch.setattr(tables, "load_spec_tables", lambda version="NNW-TEC-V1.0": altered)
    assert detection_rule("TBW")["value"] == -1.0
    det = tbw.detect(model, tkey)
    assert det.present and det.threshold == -1.0
    assert rtw.detect(model, rkey).present


@pytest.mark.parametrize("threshold", [0, -1, 0.5, 0.0001, True, "0.4"])
def test_a_tbw_key_never_sets_its_threshold(base_model: nn.Module, threshold) -> None:
    tbw = TBW()
    key = tbw.keygen(base_model, seed=0)
    assert "threshold" not in key.config
    with pytest.raises(ValueError, match="'threshold'"):
        tbw.keygen(base_model, seed=0, config={"threshold": threshold})
    forged = Key("TBW", {**key.config, "threshold": threshold}, key.tensors, key.model_signature)
    with pytest.raises(KeyMismatchError, match="does not set its decision threshold"):
        tbw.detect(base_model, forged)
    with tempfile.TemporaryDirectory() as d:
        save_key(os.path.join(d, "forged.key"), forged)
        with pytest.raises(KeyFileError, match=r"forged\.key.*'threshold'"):
            load_key(os.path.join(d, "forged.key"))
    # an older key that only repeats the spec's 0.40: read, its config given back to keygen, decided by the spec
    older = Key("TBW", {**key.config, "threshold": 0.4}, key.tensors, key.model_signature)
    assert tbw.keygen(base_model, seed=0, config=older.config) == key
    assert tbw.detect(base_model, older).threshold == 0.4


@pytest.mark.parametrize(("method", "config", "message"), [
    ("NCT", {"N": 2}, "'N': 2 is below its minimum 3"),
    ("NCT", {"N": 10**9}, "'N': 1000000000 exceeds its bound"),
    ("NCT", {"N": 64.0}, "'N': 64.0 is not an integer"),
    ("NCT", {"alpha": True}, "'alpha': True is not an integer"),
    ("NCT", {"actor": -1}, "'actor': -1 is below its minimum 0"),
    ("NCT", {"mode": "both"}, "'mode': 'both' is not one of"),
    ("NCT", {"overlap": 2}, "'overlap': 2 exceeds its bound 1"),
    ("RTW", {"T": 10**6}, "'T': 1000000 exceeds its bound 4096"),
    ("RTW", {"lam": float("nan")}, "'lam': nan is not a finite number"),
    ("RTW", {"lam": -1.0}, "'lam': -1.0 must be above 0"),
    ("RTW", {"key_type": "uniform"}, "'key_type': 'uniform' is not one of"),
    ("TBW", {"n_triggers": 10_000_000}, "'n_triggers': 10000000 exceeds its bound 10000"),
    ("TBW", {"shape": [3, 32]}, "'shape': [3, 32] must have 3 entries"),
    ("TBW", {"shape": [3, 32, 0]}, "'shape.2': 0 is below its minimum 1"),
    ("TBW", {"n_triggers": 10_000, "shape": [4, 64, 64]}, "trigger values exceeds the bound"),
    ("TBW", {"num_classes": 1}, "'num_classes': 1 is below its minimum 2"),
])
def test_key_configs_follow_the_schema(method: str, config: dict, message: str) -> None:
    """Types, ranges and bounded sizes (nnw/schemas/key-config.schema.json); the message names the field."""
    m = registry.get_method(method)
    with pytest.raises(ValueError) as info:
        m.keygen(tiny_cnn(0), seed=0, config=config)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_known_methods_only_never_import_a_path(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """get_known_method (for a key's method field) resolves built-ins and installed entry points only:
    an import path is not even imported."""
    (tmp_path / "side_effect_mod.py").write_text(f"open({str(tmp_path / 'IMPORTED')!r}, 'w')\nclass M: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("side_effect_mod:M", "os:abort", "tempfile:mkdtemp", "nnw.methods.nct:NCT", "", "NOPE"):
        with pytest.raises(registry.UnknownMethodError, match="not a known method|non-empty"):
            registry.get_known_method(name)
    assert not (tmp_path / "IMPORTED").exists()
    assert isinstance(registry.get_known_method("tbw"), TBW)
    from importlib.metadata import EntryPoint

    eps = [EntryPoint(name="EXAMPLE_EP", value="tests.plugin_method_example:ExampleMethod", group="nnw.methods")]
    monkeypatch.setattr(registry, "entry_points", lambda group: [e for e in eps if e.group == group])
    assert registry.get_known_method("EXAMPLE_EP").name == "EXAMPLE"


def test_loaded_keys_follow_the_schema_and_errors_name_file_and_field(base_model: nn.Module) -> None:
    nct, rtw, tbw = NCT(), RTW(), TBW()
    good = {"nct": nct.keygen(base_model, seed=0, config={"N": 64}), "rtw": rtw.keygen(base_model, seed=0),
            "tbw": tbw.keygen(base_model, seed=0, config={"n_triggers": 10})}
    bad = {
        "nct_seed": (good["nct"], {"key_seed": "7"}, {}, "'key_seed': '7' is not an integer"),
        "nct_K": (good["nct"], {}, {"K": good["nct"].tensors["K"][:10]}, "tensor 'K' has shape [10]"),
        "rtw_X": (good["rtw"], {}, {"X": good["rtw"].tensors["X"].double()}, "tensor 'X' has dtype float64"),
        "rtw_T": (good["rtw"], {"T": 63}, {}, "tensor 'X' has shape"),
        "rtw_extra": (good["rtw"], {"evil": 1}, {}, "unknown RTW config key(s) ['evil']"),
        "rtw_missing": (good["rtw"], {"layer": None}, {}, "'layer': None is not a string"),
        "tbw_tensor": (good["tbw"], {}, {"extra": torch.zeros(1)}, "tensor 'extra' is unknown"),
        "tbw_trig": (good["tbw"], {}, {"triggers": good["tbw"].tensors["triggers"].float()}, "dtype float32"),
    }
    with tempfile.TemporaryDirectory() as d:
        for name, (key, config, tensors, message) in bad.items():
            path = os.path.join(d, f"{name}.key")
            save_key(path, Key(key.method, {**key.config, **config}, {**key.tensors, **tensors}, key.model_signature))
            with pytest.raises(KeyFileError) as info:
                load_key(path)
            assert f"{name}.key" in str(info.value) and message in str(info.value), str(info.value)
        # another method's key is that method's business: loaded as it is
        save_key(os.path.join(d, "third.key"), Key("EXAMPLE", {"anything": [1, 2]}, {}, {}))
        assert load_key(os.path.join(d, "third.key")).config == {"anything": [1, 2]}


def test_saved_keys_get_the_usual_file_mode(base_model: nn.Module) -> None:
    key = NCT().keygen(base_model, seed=0, config={"N": 16})
    old = os.umask(0o027)
    try:
        with tempfile.TemporaryDirectory() as d:
            save_key(os.path.join(d, "k.key"), key)
            assert os.stat(os.path.join(d, "k.key")).st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_nct_match_with_the_key_ranks_within_layers():
    """Two unrelated models whose layers have different scales: the plain Spearman over all
    positions sees the shared layer structure, the within-layer statistic (with the key) does not."""
    from nnw.methods.nct import NCT
    from nnw.models import build_model

    nct = NCT()
    a, b = build_model("ResNet8", width=0.5), build_model("ResNet8", width=0.5)
    for i, (pa, pb) in enumerate(zip(a.parameters(), b.parameters())):
        g = torch.Generator().manual_seed(i)
        scale, offset = 10.0 ** (i % 4 - 2), float(i % 3)
        pa.data = torch.randn(pa.shape, generator=g) * scale + offset
        pb.data = torch.randn(pb.shape, generator=g) * scale + offset
    key = nct.keygen(a, seed=3, config={"N": 512, "mode": "fingerprint"})
    fa, fb = nct.extract(a, key), nct.extract(b, key)
    _, plain = nct.match(fa, {"b": fb})
    _, within = nct.match(fa, {"b": fb}, key=key.copy())
    assert plain > 0.3 and abs(within) < 0.2


def test_nct_within_layer_quantiles_equal_scipy_ranks_per_layer():
    """NCT's statistic ranks each value within its own layer (one sort for all layers): mid-ranks
    for ties, / (count + 1), bit-identical to scipy.stats.rankdata layer by layer."""
    import numpy as np
    import torch
    from scipy.stats import rankdata

    from nnw.methods.nct import _within_layer_quantiles

    rng = np.random.default_rng(0)
    for trial in range(200):
        counts = [int(c) for c in rng.integers(1, 80, size=int(rng.integers(1, 10)))]
        v = rng.normal(size=sum(counts)).astype(np.float32)
        if trial % 3 == 0:
            v = np.round(v * 2)  # ties
        if trial % 5 == 0:
            v[: v.size // 2] = 0.0
        got = _within_layer_quantiles(torch.from_numpy(v), counts)
        want, start = np.empty(v.size), 0
        for c in counts:
            want[start:start + c] = rankdata(v[start:start + c].astype(np.float64)) / (c + 1)
            start += c
        assert np.array_equal(got, want), trial
