"""Tests of nnw.training: determinism, exact resume from a snapshot, the hook protocol, the learning-rate
schedule and the batch augmentation.

Everything runs on the CPU, on one thread (as the tiny and embedded profiles' ``cpu_threads``), on a
synthetic 32-image classification set (16x16 pixels), so a training run takes about a second; ResNet8 is
used where the real model matters (BatchNorm buffers, Keras padding), a tiny conv net elsewhere.
"""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from nnw.data.imageset import ImageSet
from nnw.hooks import TrainContext, TrainingHook
from nnw.tasks import Task
from nnw.training import Recipe, augment_batch, lr_at, train

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

N_TRAIN, BATCH = 32, 8
STEPS_PER_EPOCH = N_TRAIN // BATCH


def _task(**recipe) -> Task:
    g = torch.Generator().manual_seed(1234)
    x = torch.randint(0, 256, (N_TRAIN + 16, 3, 16, 16), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 10, (N_TRAIN + 16,), generator=g)
    kw = dict(epochs=4, batch_size=BATCH, lr=0.05, augment="crop_flip", label_smoothing=0.1)
    kw.update(recipe)
    return Task("toy", "classification", "ResNet8", {}, Recipe(**kw), ImageSet(x[:N_TRAIN], y[:N_TRAIN]),
                ImageSet(x[N_TRAIN:], y[N_TRAIN:]), num_classes=10)




@pytest.fixture(scope="module")
def task() -> Task:
    return _task()


class Tiny(nn.Module):
    """A conv + BatchNorm + linear net: trains in milliseconds, still has buffers."""

    def __init__(self, seed: int = 0):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"not bit-identical: {differ}"


def _differ(a: dict, b: dict) -> list[str]:
    return [k for k in a if a[k].is_floating_point() and not torch.equal(a[k], b[k])]


# -- determinism ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference_run(task):
    """ResNet8 trained 4 epochs with seed 0, with a snapshot at the start of epoch 2 and at the end."""
    model = task.build_model(0)
    res = train(model, task, seed=0, snapshot_epochs={2, 4})
    return _state(model), res


def test_same_seed_gives_bit_identical_weights(task, reference_run):
    state, res = reference_run
    model = task.build_model(0)
    again = train(model, task, seed=0)
    _assert_same(state, _state(model))
    assert [h["loss"] for h in again.history] == [h["loss"] for h in res.history]
    assert res.steps == again.steps == 4 * STEPS_PER_EPOCH
    assert res.epochs == 4 and len(res.history) == 4 and not model.training  # left in eval mode


def test_other_seed_gives_other_weights(task, reference_run):
    state, _ = reference_run
    model = task.build_model(0)  # same initialization, other shuffling and augmentation
    train(model, task, seed=1)
    assert _differ(state, _state(model))
    other_init = task.build_model(1)
    assert _differ(_state(task.build_model(0)), _state(other_init))


def test_resume_from_snapshot_gives_the_uninterrupted_weights(task, reference_run):
    state, res = reference_run
    assert sorted(res.snapshots) == [2, 4]
    snap = res.snapshots[2]
    assert snap.epoch == 2 and snap.optimizer_state  # SGD momentum buffers
    _assert_same(res.snapshots[4].model_state, state)
    model = task.build_model(0)
    model.load_state_dict(snap.model_state)
    resumed = train(model, task, seed=0, start_epoch=2, optimizer_state=snap.optimizer_state)
    _assert_same(state, _state(model))
    assert resumed.steps == 2 * STEPS_PER_EPOCH
    assert [h["epoch"] for h in resumed.history] == [3, 4]
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in res.history[2:]]
    _assert_same(resumed.optimizer_state, res.optimizer_state)


def test_resume_without_optimizer_state_differs(task, reference_run):
    # the optimizer state is what makes the resume exact (momentum buffers)
    state, res = reference_run
    model = task.build_model(0)
    model.load_state_dict(res.snapshots[2].model_state)
    train(model, task, seed=0, start_epoch=2)
    assert _differ(state, _state(model))


def test_resume_with_adam_is_exact():
    task = _task(optimizer="adam", lr=0.002, weight_decay=0.0, betas=(0.9, 0.999), schedule="cosine",
                 warmup_epochs=0, epochs=3, augment="flip")
    full = Tiny()
    res = train(full, task, seed=3, snapshot_epochs=[1])
    assert any(k.endswith("/step") for k in res.snapshots[1].optimizer_state)
    model = Tiny()
    model.load_state_dict(res.snapshots[1].model_state)
    train(model, task, seed=3, start_epoch=1, optimizer_state=res.snapshots[1].optimizer_state)
    _assert_same(_state(full), _state(model))


def test_constant_lr_zero_leaves_parameters_untouched(task):
    # the Fine-tuning Modification's constant lr: lr=0 (no weight decay step either) keeps the parameters
    model = Tiny()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(model, task, seed=0, epochs=1, lr=0.0)
    for n, p in model.named_parameters():
        assert torch.equal(before[n], p.detach()), n
    assert not torch.equal(model.bn.running_mean, torch.zeros(8))  # buffers did see the data


def test_start_after_last_epoch_is_an_error(task):
    with pytest.raises(ValueError, match="start_epoch"):
        train(Tiny(), task, seed=0, start_epoch=5)


# -- hooks ----------------------------------------------------------------------------------------
class Recorder(TrainingHook):
    def __init__(self, log: list, tag: str = ""):
        self.log, self.tag = log, tag

    def _rec(self, event, ctx, *extra):
        self.log.append((self.tag + event, ctx.epoch, ctx.step, *extra))

    def on_train_start(self, model, ctx):
        assert isinstance(ctx, TrainContext) and model.training
        self._rec("train_start", ctx)

    def on_epoch_start(self, model, epoch, ctx):
        self._rec("epoch_start", ctx, epoch)

    def extra_batch(self, ctx):
        self._rec("extra_batch", ctx)
        return None

    def extra_loss(self, model, ctx):
        self._rec("extra_loss", ctx)
        return None

    def after_step(self, model, ctx):
        self._rec("after_step", ctx)

    def on_epoch_end(self, model, epoch, ctx):
        self._rec("epoch_end", ctx, epoch)

    def on_train_end(self, model, ctx):
        self._rec("train_end", ctx)


def _expected(start_epoch: int, epochs: int, spe: int, tags=("",)) -> list[tuple]:
    out = [(t + "train_start", start_epoch, start_epoch * spe) for t in tags]
    step = start_epoch * spe
    for e in range(start_epoch, epochs):
        out += [(t + "epoch_start", e, step, e) for t in tags]
        for _ in range(spe):
            out += [(t + "extra_batch", e, step) for t in tags]
            out += [(t + "extra_loss", e, step) for t in tags]
            step += 1
            out += [(t + "after_step", e, step) for t in tags]
        out += [(t + "epoch_end", e, step, e) for t in tags]
    out += [(t + "train_end", epochs - 1, step) for t in tags]
    return out


def test_hooks_are_called_in_the_documented_order(task):
    log: list = []
    train(Tiny(), task, seed=0, epochs=2, hooks=[Recorder(log)])
    assert log == _expected(0, 2, STEPS_PER_EPOCH)


def test_several_hooks_are_called_in_list_order_at_each_point(task):
    log: list = []
    train(Tiny(), task, seed=0, epochs=3, start_epoch=1, hooks=[Recorder(log, "a:"), Recorder(log, "b:")])
    assert log == _expected(1, 3, STEPS_PER_EPOCH, tags=("a:", "b:"))


def test_train_context(task):
    seen = []

    class Ctx(TrainingHook):
        def on_train_start(self, model, ctx):
            seen.append((ctx.epochs, ctx.steps_per_epoch, ctx.seed, ctx.device.type))

    train(Tiny(), task, seed=7, epochs=2, hooks=[Ctx()])
    assert seen == [(2, STEPS_PER_EPOCH, 7, "cpu")]


def test_snapshot_is_taken_before_on_epoch_start(task):
    class ZeroAt(TrainingHook):  # NCT-like: acts on the weights when epoch == alpha
        def on_epoch_start(self, model, epoch, ctx):
            if epoch == 1:
                with torch.no_grad():
                    model.fc.bias.fill_(123.0)

    res = train(Tiny(), task, seed=0, epochs=2, hooks=[ZeroAt()], snapshot_epochs={1})
    assert not torch.equal(res.snapshots[1].model_state["fc.bias"], torch.full((10,), 123.0))


def test_extra_batch_is_concatenated_to_every_batch(task):
    seen_batch = []
    k = 5

    class Triggers(TrainingHook):
        def extra_batch(self, ctx):
            x = torch.zeros(k, 3, 16, 16)  # already prepared inputs (float), like TBW's triggers
            return x, torch.full((k,), 3, dtype=torch.int32)  # dtype converted to the targets'

    model = Tiny()
    model.register_forward_pre_hook(lambda m, args: seen_batch.append(args[0].shape[0]))
    base, with_extra = Tiny(), model
    train(base, task, seed=0, epochs=1)
    train(with_extra, task, seed=0, epochs=1, hooks=[Triggers()])
    assert seen_batch == [BATCH + k] * STEPS_PER_EPOCH
    assert _differ(_state(base), _state(with_extra))


def test_extra_loss_is_added_to_the_task_loss(task):
    class Constant(TrainingHook):  # no gradient: same weights, loss shifted by exactly the constant
        def extra_loss(self, model, ctx):
            return torch.tensor(100.0)

    class L2(TrainingHook):  # with a gradient: it changes what is learnt
        def extra_loss(self, model, ctx):
            return 10.0 * model.conv.weight.pow(2).sum()

    base, const, l2 = Tiny(), Tiny(), Tiny()
    r0 = train(base, task, seed=0, epochs=2)
    r1 = train(const, task, seed=0, epochs=2, hooks=[Constant()])
    train(l2, task, seed=0, epochs=2, hooks=[L2()])
    _assert_same(_state(base), _state(const))
    for h0, h1 in zip(r0.history, r1.history):
        assert h1["loss"] == pytest.approx(h0["loss"] + 100.0, abs=1e-3)
    assert l2.conv.weight.norm() < base.conv.weight.norm()


# -- learning-rate schedule ------------------------------------------------------------------------
def test_lr_onecycle_warmup_then_cosine():
    r = Recipe(epochs=10, lr=0.1, schedule="onecycle", warmup_epochs=1.0)
    spe, total = 10, 100
    lrs = [lr_at(r, s, total, spe) for s in range(total + 1)]
    # linear warm-up over the first epoch: lr * (step + 1) / warm
    assert lrs[:10] == pytest.approx([0.01 * (s + 1) for s in range(10)])
    assert lrs[9] == pytest.approx(0.1)
    # then cosine from lr to 0 over the remaining steps
    assert lrs[10] == pytest.approx(0.1)
    assert lrs[55] == pytest.approx(0.05)  # half-way through the cosine
    assert lrs[10 + 30] == pytest.approx(0.05 * (1 + math.cos(math.pi * 30 / 90)))
    assert lrs[100] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # non-increasing after the warm-up
    assert lr_at(r, 1000, total, spe) == pytest.approx(0.0, abs=1e-12)  # clamped past the end


def test_lr_fractional_warmup():
    r = Recipe(epochs=4, lr=0.2, warmup_epochs=0.5)
    assert lr_at(r, 0, 40, 10) == pytest.approx(0.2 / 5)
    assert lr_at(r, 4, 40, 10) == pytest.approx(0.2)
    assert lr_at(r, 5, 40, 10) == pytest.approx(0.2)


def test_lr_cosine_has_no_warmup_and_constant_is_constant():
    r = Recipe(epochs=4, lr=0.2, schedule="cosine", warmup_epochs=1.0)
    assert lr_at(r, 0, 40, 10) == pytest.approx(0.2)
    assert lr_at(r, 20, 40, 10) == pytest.approx(0.1)
    assert lr_at(r, 40, 40, 10) == pytest.approx(0.0, abs=1e-12)
    c = replace(r, schedule="constant")
    assert {lr_at(c, s, 40, 10) for s in (0, 7, 39, 40)} == {0.2}


def test_lr_is_a_pure_function_of_the_step():
    r = Recipe(epochs=5, lr=0.1)
    assert [lr_at(r, s, 50, 10) for s in range(50)] == [lr_at(r, s, 50, 10) for s in range(50)]


# -- augmentation -----------------------------------------------------------------------------------
def _images(b=16, h=8, w=8):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (b, 3, h, w), generator=g, dtype=torch.uint8)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("mode", ["flip", "crop_flip"])
def test_augment_shape_dtype_and_determinism(mode):
    x = _images()
    a = augment_batch(x, mode, _gen(1))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, augment_batch(x, mode, _gen(1)))
    assert not torch.equal(a, augment_batch(x, mode, _gen(2)))
    assert torch.equal(x, _images())  # the input is not modified


def test_augment_none_is_identity():
    x = _images()
    assert augment_batch(x, "none", _gen(0)) is x


def test_augment_flip_flips_some_samples_horizontally():
    x = _images(b=64)
    a = augment_batch(x, "flip", _gen(0))
    flipped = [bool(torch.equal(a[i], x[i].flip(2))) for i in range(len(x))]
    kept = [bool(torch.equal(a[i], x[i])) for i in range(len(x))]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 54  # about half


def test_augment_crop_flip_is_a_shifted_crop_of_the_padded_image():
    x = _images(b=8)
    a = augment_batch(x, "crop_flip", _gen(0))
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    shifts = []
    for s in range(len(x)):
        found = [(i, j, f) for f in (False, True) for i in range(9) for j in range(9)
                 if torch.equal(a[s], (padded[s].flip(2) if f else padded[s])[:, i:i + 8, j:j + 8])]
        assert found, f"sample {s} is not a crop of the padded image"
        shifts.append(found[0][:2])
    assert len(set(shifts)) > 1


def test_augment_unknown_mode():
    with pytest.raises(ValueError, match="unknown augmentation"):
        augment_batch(_images(), "rotate", _gen(0))


def test_compiled_forward_trains_the_model_itself(task, reference_run):
    """``Recipe.compile``: the training forward goes through torch.compile (backend "eager" here: the
    code path without a C++ toolchain); the model's own parameters are trained, its state dict keeps
    its keys, and an unset ``compile`` stays out of the recipe's dict (cache keys unchanged)."""
    import dataclasses

    state, _ = reference_run
    assert "compile" not in task.recipe.as_dict()
    recipe = dataclasses.replace(task.recipe, compile="eager")
    assert recipe.as_dict()["compile"] == "eager"
    model = task.build_model(0)
    train(model, task, seed=0, recipe=recipe)
    got = _state(model)
    assert got.keys() == state.keys()
    for k in state:  # same numbers as the uncompiled run (eager backend: same kernels)
        torch.testing.assert_close(got[k], state[k], rtol=1e-4, atol=1e-5)


def test_a_hook_can_end_the_run_after_an_epoch(task):
    class StopAt(TrainingHook):
        def on_epoch_end(self, model, epoch, ctx):
            ctx.stop = epoch == 1

    calls = []

    class Watch(TrainingHook):
        def on_epoch_start(self, model, epoch, ctx):
            calls.append(("start", epoch))

        def on_train_end(self, model, ctx):
            calls.append(("end", ctx.epoch))

    res = train(Tiny(), task, seed=0, hooks=[StopAt(), Watch()])
    assert [h["epoch"] for h in res.history] == [1, 2] and res.steps == 2 * STEPS_PER_EPOCH
    assert calls == [("start", 0), ("start", 1), ("end", 1)]  # on_train_end still runs


def test_overwriting_fine_tunes_each_further_mark_until_it_is_detected(task):
    """§7.2.6 with in-training methods: a further Actor's mark counts once it is in the model, so
    its fine-tuning stops at the first epoch it is detected (at most E epochs); until="epochs"
    trains exactly E."""
    from nnw.methods.base import Detection, Key
    from nnw.modifications import ModificationContext, make_modification

    class Slow:
        """Its mark is 'detected' after two epochs of its hook (or never, for never_in)."""

        name = "Slow"

        def __init__(self, never_in=False):
            self.never_in, self.epochs = never_in, {}

        def keygen(self, model, *, seed, config=None):
            return Key("Slow", dict(config or {}), {}, {"seed": seed})

        def embed(self, model, key):
            raise NotImplementedError

        def training_hook(self, key, *, prepare=None):
            method = self

            class Count(TrainingHook):
                def on_epoch_end(self, model, epoch, ctx):
                    method.epochs[key.model_signature["seed"]] = epoch + 1
            return Count()

        def detect(self, model, key, *, prepare=None):
            n = self.epochs.get(key.model_signature["seed"], 0)
            return Detection(present=not self.never_in and n >= 2, score=n, threshold=2)

    for until, never_in, expected in (("detected", False, [2, 2, 2]), ("detected", True, [5, 5, 5]),
                                      ("epochs", False, [5, 5, 5])):
        method = Slow(never_in)
        ctx = ModificationContext(task=task, train=train, device="cpu", method=method, key=None)
        make_modification("overwriting", k=3, E=5, until=until).apply(Tiny(), seed=0, context=ctx)
        assert sorted(method.epochs.values()) == expected, (until, never_in)


# -- numerics path: bf16 autocast where the CPU has native bf16, else fp32; channels_last ------------
def test_cpu_bf16_decision_follows_native_features_and_the_override():
    from nnw.device import cpu_bf16

    assert not cpu_bf16({"avx2", "fma"}, env="auto")  # AVX2 only: bf16 is emulated, several times slower
    assert not cpu_bf16({"avx512f", "avx512bw"}, env="")  # AVX512 without BF16
    assert cpu_bf16({"avx512f", "avx512_bf16"}, env="auto")  # Cooper Lake, Zen 4
    assert cpu_bf16({"amx_tile", "amx_bf16"}, env="auto")  # Sapphire Rapids
    assert not cpu_bf16({"amx_bf16"}, env="0") and not cpu_bf16({"amx_bf16"}, env="off")
    assert cpu_bf16({"avx2"}, env="1") and cpu_bf16(set(), env="on")
    with pytest.raises(ValueError, match="NNW_CPU_BF16"):
        cpu_bf16({"avx2"}, env="sometimes")


def test_use_bf16_needs_the_recipe_and_a_capable_device(monkeypatch):
    from nnw.device import CPU_BF16_ENV, use_bf16

    monkeypatch.setenv(CPU_BF16_ENV, "1")
    assert use_bf16(torch.device("cpu"), True) and not use_bf16(torch.device("cpu"), False)
    assert use_bf16(torch.device("cuda"), True) and not use_bf16("cuda", False)
    monkeypatch.setenv(CPU_BF16_ENV, "0")
    assert not use_bf16(torch.device("cpu"), True) and use_bf16("cuda", True)
    assert not use_bf16("mps", True)


class _AutocastProbe(Tiny):
    """Tiny, recording whether each training forward ran under CPU bf16 autocast."""

    def __init__(self):
        super().__init__()
        self.seen: list[bool] = []

    def forward(self, x):
        if self.training:
            self.seen.append(torch.is_autocast_enabled("cpu"))
        return super().forward(x)


@pytest.mark.parametrize("setting, bf16, expected", [("1", True, True), ("0", True, False), ("1", False, False)])
def test_training_takes_the_decided_path(monkeypatch, task, setting, bf16, expected):
    monkeypatch.setenv("NNW_CPU_BF16", setting)
    model = _AutocastProbe()
    train(model, task, recipe=replace(task.recipe, epochs=1, bf16=bf16), seed=0, device="cpu")
    assert model.seen and set(model.seen) == {expected}
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast never casts the weights


def test_cpu_fallback_without_native_bf16_is_the_fp32_path(monkeypatch, task):
    """On a CPU without native bf16 (auto), training is bit-identical to an explicit fp32 recipe."""
    import nnw.device

    monkeypatch.setenv("NNW_CPU_BF16", "auto")
    monkeypatch.setattr(nnw.device, "cpu_features", lambda: frozenset({"avx2", "fma"}))
    a, b = Tiny(), Tiny()
    train(a, task, recipe=replace(task.recipe, epochs=1, bf16=True), seed=0, device="cpu")
    train(b, task, recipe=replace(task.recipe, epochs=1, bf16=False), seed=0, device="cpu")
    _assert_same(_state(a), _state(b))


def test_zoo_cache_identity_records_the_numerics_path(monkeypatch, tmp_path):
    """The Zoo's cache keys carry the bf16 decision: entries built on the other path are never reused."""
    from pathlib import Path

    from nnw.cache import ModelCache, cache_key
    from nnw.profile import load_profile
    from nnw.zoo import Zoo

    profile = load_profile(str(Path(__file__).parents[1] / "fixtures" / "profiles" / "tiny.json"))
    threads = torch.get_num_threads()
    try:
        specs = {}
        for setting in ("0", "1"):
            monkeypatch.setenv("NNW_CPU_BF16", setting)
            zoo = Zoo(profile, ModelCache(tmp_path), torch.device("cpu"))
            assert zoo.numerics["cpu_bf16"] is (setting == "1")
            specs[setting] = zoo._base_spec(zoo.task("ResNet8"), 0)
    finally:
        torch.set_num_threads(threads)
    assert specs["0"]["numerics"] != specs["1"]["numerics"]
    assert cache_key(specs["0"]) != cache_key(specs["1"])


def test_channels_last_training_keeps_the_model_layout_and_resumes_exactly(task):
    recipe = replace(task.recipe, channels_last=True)
    full = task.build_model(0)
    res = train(full, task, recipe=recipe, seed=0, snapshot_epochs={2})
    assert all(p.is_contiguous() for p in full.parameters())
    resumed = task.build_model(0)
    resumed.load_state_dict(res.snapshots[2].model_state)
    train(resumed, task, recipe=recipe, seed=0, start_epoch=2, optimizer_state=res.snapshots[2].optimizer_state)
    _assert_same(_state(full), _state(resumed))
    plain = replace(task, recipe=replace(task.recipe, channels_last=False))
    torch.testing.assert_close(task.predict(full, task.test.x), plain.predict(full, task.test.x), atol=1e-4, rtol=1e-4)


def test_dropout_models_train_the_same_whatever_ran_before():
    """Pix2pix has dropout: its masks come from the global RNG, seeded per (seed, epoch) inside a
    fork, so the trained model depends on the seeds alone (not on the test order or the xdist
    worker), and the caller's RNG state is untouched."""
    from pathlib import Path

    from nnw.profile import load_profile
    from nnw.tasks import build_task
    from nnw.training import train

    tiny = load_profile(str(Path(__file__).parent.parent / "fixtures" / "profiles" / "tiny.json"))
    task = build_task("Pix2pix", tiny.tasks["Pix2pix"])
    assert any(isinstance(m, torch.nn.Dropout) for m in task.build_model(0).modules())
    states = []
    for before in (1, 2):
        torch.manual_seed(before)  # another history of the process
        model = task.build_model(0)
        state = torch.get_rng_state()
        train(model, task, seed=3, device="cpu")
        assert torch.equal(torch.get_rng_state(), state)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
