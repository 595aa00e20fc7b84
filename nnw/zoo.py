"""The models a conformance run needs, built once and kept in the model cache.

- ``unmarked(task, seed)``: the M unwatermarked reference models (NNW-NNT robustness procedure),
  with training snapshots at the profile's insertion epochs α so that NCT marks at α > 0 share
  the training trunk of the unmarked model (NNW-TEC §7.2.3).
- ``marked(task, method, config, model_seed, key_seed)``: a marked model and its Key, inserted
  in training through the method's hook or after training through ``embed``.
- ``modified(...)``: a Modification applied to a model; training-based ones are cached too.

Every entry is content-addressed by what determines it (profile, task recipe and data, seeds,
method name/version/config, modification) — see :mod:`nnw.cache`.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from nnw.cache import ModelCache
from nnw.device import cpu_bf16
from nnw.methods.base import Key, TraceabilityMethod
from nnw.profile import Profile
from nnw.tasks import Task, build_task
from nnw.training import train

log = logging.getLogger("nnw.zoo")

RECIPE_VERSION = "4"  # bump when training code changes results (4: dropout seeded per epoch)


def _split(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    n = len(prefix)
    return {k[n:]: v for k, v in state.items() if k.startswith(prefix)}


def _prefixed(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v.detach().cpu().contiguous() for k, v in state.items()}


def key_to_entry(key: Key) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    return (_prefixed(key.tensors, "key."),
            {"method": key.method, "config": key.config, "model_signature": key.model_signature})


def key_from_entry(state: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> Key:
    return Key(method=meta["method"], config=dict(meta["config"]), tensors=_split(state, "key."),
               model_signature=dict(meta["model_signature"]))


@dataclass
class Marked:
    model: torch.nn.Module
    key: Key
    record: dict[str, Any]


class Zoo:
    """Builds (or loads from the cache) the models of a profile on one device."""

    def __init__(self, profile: Profile, cache: ModelCache, device: torch.device, data_root: str | None = None,
                 progress=None):
        self.profile, self.cache, self.device, self.data_root = profile, cache, device, data_root
        self.progress = progress or (lambda msg: None)
        self._tasks: dict[str, Task] = {}
        self._skeletons: dict[str, torch.nn.Module] = {}  # per task, never handed out (see _load_model)
        # CPU kernels reduce in a thread-count-dependent order: fix the count (profile's cpu_threads)
        # and make it part of every cache key, so entries built differently never mix.
        self.threads = int(profile.data.get("cpu_threads", 0)) if device.type == "cpu" else 0
        if self.threads > 0:
            torch.set_num_threads(self.threads)
        # and the numerics path: bf16 autocast where the CPU computes bf16 natively, else fp32
        # (nnw.device.cpu_bf16; the recipes' bf16/channels_last fields are in the task spec)
        self.numerics = {"device": device.type, "cpu_threads": self.threads or torch.get_num_threads(),
                         "cpu_bf16": cpu_bf16()} if device.type == "cpu" else {"device": device.type}

    # -- tasks ---------------------------------------------------------------------------
    def task(self, name: str) -> Task:
        if name not in self._tasks:
            if name not in self.profile.tasks:
                raise ValueError(f"profile {self.profile.name!r} has no task {name!r}; it has {sorted(self.profile.tasks)}")
            self._tasks[name] = build_task(name, self.profile.tasks[name], self.data_root)
        return self._tasks[name]

    def _base_spec(self, task: Task, seed: int) -> dict[str, Any]:
        return {"kind": "unmarked", "recipe_version": RECIPE_VERSION, **task.spec(), "seed": seed,
                "numerics": self.numerics}

    def _alphas(self, task: Task) -> list[int]:
        alphas = set()  # the insertion epochs α of every method's grids (the spec's name, NNW-TEC §7.2.3)
        for name in self.profile.data.get("methods", {}):
            for section in ("imperceptibility", "robustness"):
                alphas.update(self.profile.method_grid(name, section).get("alpha", []))
        return sorted(a for a in alphas if 0 < a < task.recipe.epochs)

    def _load_model(self, task: Task, state: Mapping[str, torch.Tensor]) -> torch.nn.Module:
        from nnw.io import load_into

        # a copy of one skeleton per task, never handed out: building runs the initializers (DeepLabV3: 0.2 s)
        skeleton = self._skeletons.get(task.name)
        if skeleton is None:
            skeleton = self._skeletons[task.name] = task.build_model(0)
        model = copy.deepcopy(skeleton)
        load_into(model, state, source=f"cache entry of {task.name}")
        return model.to(self.device).eval()

    # -- unmarked reference models --------------------------------------------------------
    def unmarked(self, task_name: str, seed: int) -> tuple[torch.nn.Module, dict[str, Any]]:
        """The unmarked model of ``seed``. When another process (xdist worker) is training it, this one
        trains the task's other missing unmarked seeds meanwhile instead of waiting idle."""
        task = self.task(task_name)
        got = self._unmarked_entry(task, seed, wait=False)
        if got is None:
            for other in self.profile.model_seeds_of(task_name):
                if other != seed:
                    self._unmarked_entry(task, other, wait=False)
            got = self._unmarked_entry(task, seed, wait=True)
        state, record = got
        return self._load_model(task, state), record

    def _unmarked_entry(self, task: Task, seed: int, *, wait: bool):
        task_name = task.name
        spec = {**self._base_spec(task, seed), "name": f"{task_name} seed {seed} (unmarked)"}

        def build():
            self.progress(f"training unmarked {task_name} (seed {seed}, {task.recipe.epochs} epochs)")
            model = task.build_model(seed).to(self.device)
            res = train(model, task, seed=seed, device=self.device, snapshot_epochs=self._alphas(task),
                        progress=lambda r: self.progress(f"  {task_name} seed {seed}: epoch {r['epoch']} loss {r['loss']:.3f}"))
            for epoch, snap in res.snapshots.items():
                sspec = {**self._base_spec(task, seed), "kind": "snapshot", "epoch": epoch}
                self.cache.get_or_build(sspec, lambda s=snap: ({**_prefixed(s.model_state, "model."),
                                                                 **_prefixed(s.optimizer_state, "opt.")}, {}))
            perf = task.evaluate(model)
            return model.state_dict(), {"performance": perf, "train_seconds": res.seconds, "steps": res.steps}

        return self.cache.get_or_build(spec, build, wait=wait)

    def snapshot(self, task_name: str, seed: int, epoch: int) -> tuple[dict, dict]:
        task = self.task(task_name)
        sspec = {**self._base_spec(task, seed), "kind": "snapshot", "epoch": epoch}
        got = self.cache.get(sspec)
        if got is None:  # the trunk is made while training the unmarked model
            self.unmarked(task_name, seed)
            got = self.cache.get(sspec)
        if got is None:
            raise RuntimeError(f"no training snapshot at epoch {epoch} for {task_name} seed {seed}: "
                               f"the profile's alpha grid must include {epoch}")
        state, _ = got
        return _split(state, "model."), _split(state, "opt.")

    # -- marked models ----------------------------------------------------------------------
    def marked(self, task_name: str, method: TraceabilityMethod, config: Mapping[str, Any], model_seed: int,
               key_seed: int) -> Marked:
        task = self.task(task_name)
        config = dict(config)
        from nnw.methods.identity import method_identity

        spec = {**self._base_spec(task, model_seed), "kind": "marked", **method_identity(method),
                "config": config, "key_seed": key_seed,
                "name": f"{task_name} {method.name}{config} seed {model_seed} key {key_seed}"}

        def build():
            t0 = time.perf_counter()
            alpha = int(config.get("alpha", 0)) if method.tags.insertion == "in-training" else 0
            if method.tags.insertion == "post-training":
                base, _ = self.unmarked(task_name, model_seed)
                key = method.keygen(base, seed=key_seed, config=config)
                model = method.embed(base, key)
            elif method.tags.insertion == "in-training":
                self.progress(f"training marked {task_name} with {method.name} {config} (seed {model_seed}, key {key_seed})")
                model = task.build_model(model_seed).to(self.device)
                opt_state = None
                if alpha > 0:
                    mstate, opt_state = self.snapshot(task_name, model_seed, alpha)
                    model.load_state_dict(mstate)
                key = method.keygen(model, seed=key_seed, config=config)
                hook = method.training_hook(key, prepare=task.prepare)
                train(model, task, seed=model_seed, device=self.device, start_epoch=alpha, hooks=[hook],
                      optimizer_state=opt_state)
                key = getattr(hook, "key", key)
            else:
                raise ValueError(f"method {method.name} inserts nothing (insertion={method.tags.insertion!r})")
            perf = task.evaluate(model)
            det = method.detect(model, key, prepare=task.prepare)
            kstate, kmeta = key_to_entry(key)
            record = {"performance": perf, "key": kmeta, "insert_seconds": time.perf_counter() - t0,
                      "detection": {"present": bool(det.present), "score": float(det.score),
                                    "threshold": float(det.threshold),
                                    "p_value": None if det.p_value is None else float(det.p_value)}}
            return {**_prefixed(model.state_dict(), "model."), **kstate}, record

        state, record = self.cache.get_or_build(spec, build)
        model = self._load_model(task, _split(state, "model."))
        return Marked(model, key_from_entry(state, record["key"]), record)

    # -- evaluations -----------------------------------------------------------------------
    def evaluate(self, task_name: str, model: torch.nn.Module, identity: Mapping[str, Any]) -> dict[str, float]:
        """``task.evaluate(model)``, cached under ``identity`` (what determines the model), so a
        warm run re-applies cheap Modifications for the detector but never re-evaluates."""
        task = self.task(task_name)
        spec = {"kind": "evaluation", "recipe_version": RECIPE_VERSION, "task": task.spec(), "of": dict(identity),
                "numerics": self.numerics}
        _, record = self.cache.get_or_build(spec, lambda: ({}, {"performance": task.evaluate(model)}))
        return record["performance"]

    # -- modified models -----------------------------------------------------------------
    def _modified_spec(self, task: Task, identity: Mapping[str, Any], modification, seed: int) -> dict[str, Any]:
        return {"kind": "modified", "recipe_version": RECIPE_VERSION, "task": task.spec(), "of": dict(identity),
                "numerics": self.numerics, "modification": modification.cache_id, "seed": seed}

    def modified(self, task_name: str, model: torch.nn.Module, modification, *, seed: int, identity: Mapping[str, Any],
                 method: TraceabilityMethod | None = None, key: Key | None = None) -> torch.nn.Module:
        """``modification`` applied to ``model``; training-based results are cached under ``identity``
        (the spec of the model being modified) + the modification's canonical name."""
        from nnw.modifications import ModificationContext

        task = self.task(task_name)
        if getattr(modification, "family", None) == "overwriting":  # keeps every stage and its key
            return self.overwritten(task_name, model, modification, seed=seed, identity=identity,
                                    method=method, key=key)[-1][0]
        ctx = ModificationContext(task=task, train=train, device=self.device, method=method, key=key)
        if not getattr(modification, "needs_training", False):
            return modification.apply(model, seed=seed, context=ctx).eval()
        if getattr(modification, "resumes", None):
            return self._load_model(task, self._resumed(task, model, modification, seed, identity, ctx)[0])
        spec = self._modified_spec(task, identity, modification, seed)

        def build():
            self.progress(f"applying {modification.name} to {identity.get('name', task_name)}")
            out = modification.apply(model, seed=seed, context=ctx)
            return out.state_dict(), {}

        state, _ = self.cache.get_or_build(spec, build)
        return self._load_model(task, state)

    def _resumed(self, task: Task, model: torch.nn.Module, modification, seed: int, identity: Mapping[str, Any],
                 ctx) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """(model state, optimizer state) of a resumable training Modification (``resumes``: the
        parameter counting its epochs): E epochs are always built from the cached E − 1, so a grid
        E ∈ {1, 3} costs 3 epochs, and the result does not depend on which value was asked first."""
        import copy

        from nnw.modifications import make_modification

        param = modification.resumes
        epochs = int(modification.params[param])
        spec = {**self._modified_spec(task, identity, modification, seed), "format": "model+optimizer"}

        def build():
            if epochs > 1:
                prev = make_modification(modification.family, **{**modification.params, param: epochs - 1})
                prev_model, prev_opt = self._resumed(task, model, prev, seed, identity, ctx)
                work = self._load_model(task, prev_model)
            else:
                work, prev_opt = copy.deepcopy(model), None
            self.progress(f"applying {modification.name} to {identity.get('name', task.name)}")
            opt = modification.train_epochs(work, seed=seed, context=ctx, start_epoch=epochs - 1,
                                            optimizer_state=prev_opt)
            return {**_prefixed(work.state_dict(), "model."), **_prefixed(opt, "opt.")}, {}

        state, _ = self.cache.get_or_build(spec, build)
        return _split(state, "model."), _split(state, "opt.")

    def overwritten(self, task_name: str, model: torch.nn.Module, modification, *, seed: int,
                    identity: Mapping[str, Any], method: TraceabilityMethod | None,
                    key: Key | None) -> list[tuple[torch.nn.Module, Key]]:
        """Watermark Overwriting stage by stage (§7.2.6): ``[(model after i further marks, Key of the
        i-th further mark)]`` for i = 1..k. Stage i is cached as ``overwriting(k=i)`` of ``model``
        (with its Key), so shorter overwritings of the same model reuse the stages of a longer one."""
        from nnw.modifications import ModificationContext, make_modification

        task = self.task(task_name)
        params = modification.params
        specs = [{**self._modified_spec(task, identity, make_modification("overwriting", **{**params, "k": i}), seed),
                  "kind": "overwritten"} for i in range(1, int(params["k"]) + 1)]

        def entry(stage: torch.nn.Module, k_i: Key):
            kstate, kmeta = key_to_entry(k_i)
            return {**_prefixed(stage.state_dict(), "model."), **kstate}, {"key": kmeta}

        def build():  # runs under the last stage's lock; publishes every stage on the way
            self.progress(f"applying {modification.name} to {identity.get('name', task_name)} (mark by mark)")
            ctx = ModificationContext(task=task, train=train, device=self.device, method=method, key=key)
            work = self._load_model(task, model.state_dict())
            last = None
            for spec, (stage, k_i) in zip(specs, modification.marks(work, seed=seed, context=ctx)):
                last = entry(stage, k_i)
                if spec is not specs[-1]:
                    self.cache.get_or_build(spec, lambda: last)
            return last

        got = [self.cache.get(s) for s in specs]
        if any(g is None for g in got):
            self.cache.get_or_build(specs[-1], build)
            got = [self.cache.get(s) for s in specs]
        return [(self._load_model(task, _split(st, "model.")), key_from_entry(st, rec["key"])) for st, rec in got]
