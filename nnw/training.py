"""One training loop for every task, with the hooks traceability methods need.

NNW-TEC §5.2.2 (Trainer role), §7.2.3 (NCT: insertion at epoch α), §7.3.2 (RTW: Regularization
Term), §7.4.2 (TBW: trigger batches), and the Fine-tuning Modification ("resumes the training ...
for E additional epochs", NNW-TEC §3).

Determinism: the shuffling and augmentation of epoch ``e`` depend only on ``(seed, e)``, the
learning rate only on the global step, and snapshots carry the optimizer state. So a run resumed
from a snapshot at epoch α continues *exactly* as the uninterrupted run would — this is how the
marked models of NCT at α > 0 share their training trunk with the unmarked model.

GPU path: data stays resident on the device, no per-batch host synchronization (the running loss
is accumulated on the device and read once per epoch), optional channels_last and bf16 autocast.

Numerics path (recipe fields ``bf16``, ``channels_last``): channels_last inputs on every device
(and weights on CUDA); bf16 autocast on CUDA, and on CPUs that compute bf16 natively (AMX or AVX512-BF16), falling back to
fp32 elsewhere by itself (:func:`nnw.device.cpu_bf16`, recorded in the Zoo's cache keys). The model
leaves :func:`train` in the default (contiguous) memory format whatever ran inside.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from nnw.device import use_bf16
from nnw.hooks import TrainContext, TrainingHook

log = logging.getLogger("nnw.training")


@dataclass(frozen=True)
class Recipe:
    """Training hyperparameters (NNW-TEC §3 "Hyperparameters"); profiles set them per task."""

    epochs: int
    batch_size: int = 128
    optimizer: str = "sgd"            # "sgd" (momentum, nesterov) or "adam"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    schedule: str = "onecycle"        # "onecycle" (linear warm-up, cosine decay), "cosine", "constant"
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    augment: str = "none"             # "none", "flip", "crop_flip" (pad-4 random crop + h-flip)
    finetune_lr: float = 0.01         # Fine-tuning Modification: constant lr (MPAI reference software)
    betas: tuple[float, float] = (0.5, 0.999)  # adam only
    bf16: bool = True                 # bf16 autocast on CUDA, and on CPUs with native bf16 (else fp32)
    channels_last: bool = False       # channels_last activations and weights while training (any device)
    compile: str | None = None        # torch.compile backend for the training forward ("inductor"), or None
    class_weights: str | None = None  # segmentation: "sqrt_inverse_frequency" of the training labels, or None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Recipe":
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown recipe field(s) {unknown}; known: {sorted(known)}")
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)

    def as_dict(self) -> dict[str, Any]:
        # fields added later are left out while unset, so cache keys of recipes written before them stay valid
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()
                if not (k in ("compile", "class_weights") and v is None)}


@dataclass
class Snapshot:
    """Model and optimizer state at the *start* of ``epoch`` (after ``epoch`` epochs)."""

    epoch: int
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, torch.Tensor]


@dataclass
class TrainResult:
    model: torch.nn.Module
    epochs: int
    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    snapshots: dict[int, Snapshot] = field(default_factory=dict)
    optimizer_state: dict[str, torch.Tensor] = field(default_factory=dict)


def lr_at(recipe: Recipe, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Learning rate at a global step (a pure function of the step, so runs resume exactly)."""
    if recipe.schedule == "constant":
        return recipe.lr
    warm = int(recipe.warmup_epochs * steps_per_epoch) if recipe.schedule == "onecycle" else 0
    if step < warm:
        return recipe.lr * (step + 1) / warm
    progress = (step - warm) / max(1, total_steps - warm)
    return 0.5 * recipe.lr * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: torch.nn.Module, recipe: Recipe, lr: float | None = None) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    lr = recipe.lr if lr is None else lr
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay,
                               nesterov=recipe.nesterov and recipe.momentum > 0)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=recipe.betas, weight_decay=recipe.weight_decay)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}: expected 'sgd' or 'adam'")


def optimizer_state_tensors(opt: torch.optim.Optimizer, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Optimizer buffers as a flat ``{param_name/buffer: tensor}`` dict (safetensors-friendly)."""
    names = {id(p): n for n, p in model.named_parameters()}
    out: dict[str, torch.Tensor] = {}
    for group in opt.param_groups:
        for p in group["params"]:
            for k, v in opt.state.get(p, {}).items():
                if torch.is_tensor(v):
                    out[f"{names[id(p)]}/{k}"] = v.detach().clone()
    return out


def load_optimizer_state(opt: torch.optim.Optimizer, model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for key, v in state.items():
        name, buf = key.rsplit("/", 1)
        if name not in params:
            raise ValueError(f"optimizer state names parameter {name!r}, which the model does not have")
        p = params[name]
        opt.state[p][buf] = v.to(device=p.device, dtype=v.dtype if buf == "step" else p.dtype).clone()


def _epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device if device.type == "cuda" else "cpu")
    g.manual_seed((seed * 1_000_003 + epoch * 7919 + 17) % (2**63 - 1))
    return g


def augment_batch(x: torch.Tensor, mode: str, g: torch.Generator) -> torch.Tensor:
    """Vectorized per-sample augmentation on the device: h-flip and/or pad-4 random crop."""
    if mode == "none":
        return x
    b, _, h, w = x.shape
    if mode in ("flip", "crop_flip"):
        flip = torch.rand(b, generator=g, device=g.device) < 0.5
        x = torch.where(flip.to(x.device)[:, None, None, None], x.flip(3), x)
    if mode == "crop_flip":
        pad = 4
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        i = torch.randint(0, 2 * pad + 1, (b,), generator=g, device=g.device).to(x.device)
        j = torch.randint(0, 2 * pad + 1, (b,), generator=g, device=g.device).to(x.device)
        rows = (i[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
        cols = (j[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
        x = xp[torch.arange(b, device=x.device)[:, None, None, None],
               torch.arange(x.shape[1], device=x.device)[None, :, None, None], rows, cols]
    elif mode != "flip":
        raise ValueError(f"unknown augmentation {mode!r}: expected 'none', 'flip' or 'crop_flip'")
    return x


def train(model: torch.nn.Module, task: Any, **kwargs: Any) -> TrainResult:
    """Train ``model`` in place (see :func:`_train` for the arguments). The stochastic layers
    (dropout: Pix2pix, DeepLabV3's ASPP) draw from the global RNG, which is seeded at the start of
    every epoch from (seed, epoch) inside a fork of it: the result depends on the seeds alone, not
    on what ran before in the process (test order, xdist workers), and a resumed run (``start_epoch``)
    equals an uninterrupted one; the caller's RNG state is left as it was."""
    device = kwargs.get("device")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        return _train(model, task, **kwargs)


def _train(
    model: torch.nn.Module,
    task: Any,
    *,
    recipe: Recipe | None = None,
    epochs: int | None = None,
    start_epoch: int = 0,
    hooks: Sequence[TrainingHook] = (),
    seed: int = 0,
    device: torch.device | str | None = None,
    optimizer_state: Mapping[str, torch.Tensor] | None = None,
    snapshot_epochs: Iterable[int] = (),
    lr: float | None = None,
    progress: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``task.train`` for epochs ``start_epoch .. epochs-1``.

    ``lr`` set: constant learning rate (Fine-tuning). ``snapshot_epochs``: keep model and optimizer
    state at the start of these epochs (before the hooks' ``on_epoch_start``). The task provides
    ``train`` (an ImageSet), ``prepare(x_uint8)``, ``target(y)`` and ``loss`` (see nnw.tasks).
    """
    recipe = recipe or task.recipe
    epochs = recipe.epochs if epochs is None else epochs
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if start_epoch > epochs:
        raise ValueError(f"start_epoch {start_epoch} is after the last epoch {epochs}")
    model.to(device)
    # channels_last: the inputs on every device (the convolutions follow them; on CPU as fast as with
    # converted weights, and the model keeps its layout), the weights too on CUDA
    weights_last = recipe.channels_last and device.type == "cuda"
    if weights_last:
        model.to(memory_format=torch.channels_last)
    data = task.train.to(device)
    n = len(data)
    bs = min(recipe.batch_size, n)
    steps_per_epoch = n // bs  # drop the last partial batch: every step sees a full batch
    total_steps = steps_per_epoch * epochs
    opt = make_optimizer(model, recipe, lr)
    if optimizer_state:
        load_optimizer_state(opt, model, optimizer_state)
    loss_fn = task.make_loss(device) if hasattr(task, "make_loss") else task.loss
    ctx = TrainContext(device=device, epochs=epochs, steps_per_epoch=steps_per_epoch, seed=seed,
                       epoch=start_epoch, step=start_epoch * steps_per_epoch)
    snaps = set(snapshot_epochs)
    result = TrainResult(model=model, epochs=epochs, steps=0, seconds=0.0)
    autocast = use_bf16(device, recipe.bf16)
    # the compiled forward shares the model's parameters: state dicts and hooks see the model itself
    forward = torch.compile(model, backend=recipe.compile, dynamic=False) if recipe.compile else model
    t0 = time.perf_counter()
    model.train()
    for h in hooks:
        h.on_train_start(model, ctx)
    for epoch in range(start_epoch, epochs):
        ctx.epoch = epoch
        if epoch in snaps:
            result.snapshots[epoch] = Snapshot(epoch, {k: v.detach().clone() for k, v in model.state_dict().items()},
                                               optimizer_state_tensors(opt, model))
        for h in hooks:
            h.on_epoch_start(model, epoch, ctx)
        g = _epoch_generator(seed, epoch, device)
        torch.manual_seed((seed * 1_000_003 + epoch * 7919 + 23) % (2**63 - 1))  # dropout masks
        perm = torch.randperm(n, generator=g, device=g.device).to(device)
        running = torch.zeros((), device=device)
        te = time.perf_counter()
        for b in range(steps_per_epoch):
            idx = perm[b * bs:(b + 1) * bs]
            x = task.prepare(augment_batch(data.x[idx], recipe.augment, g) if recipe.augment != "none" else data.x[idx])
            y = task.target(data.y[idx])
            for h in hooks:
                extra = h.extra_batch(ctx)
                if extra is not None:
                    x = torch.cat([x, extra[0].to(x.dtype)])
                    y = torch.cat([y, extra[1].to(y.dtype)])
            if recipe.channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            if lr is None:
                for group in opt.param_groups:
                    group["lr"] = lr_at(recipe, ctx.step, total_steps, steps_per_epoch)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
                out = forward(x)
                loss = loss_fn(out, y, x)
            for h in hooks:
                extra_loss = h.extra_loss(model, ctx)
                if extra_loss is not None:
                    loss = loss + extra_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if hasattr(loss_fn, "after_step"):
                loss_fn.after_step(out, y, x)
            running += loss.detach()
            ctx.step += 1
            result.steps += 1
            for h in hooks:
                h.after_step(model, ctx)
        for h in hooks:
            h.on_epoch_end(model, epoch, ctx)
        record = {"epoch": epoch + 1, "loss": float(running) / max(1, steps_per_epoch),
                  "seconds": time.perf_counter() - te}
        result.history.append(record)
        log.info("epoch %d/%d loss %.4f (%.1f s)", epoch + 1, epochs, record["loss"], record["seconds"])
        if progress is not None:
            progress(record)
        if ctx.stop:  # a hook ended the run (e.g. Watermark Overwriting once the new mark is in)
            break
    if epochs in snaps:
        result.snapshots[epochs] = Snapshot(epochs, {k: v.detach().clone() for k, v in model.state_dict().items()},
                                            optimizer_state_tensors(opt, model))
    if weights_last:  # callers index weights row-major (methods, state dicts): back to contiguous
        model.to(memory_format=torch.contiguous_format)
    for h in hooks:
        h.on_train_end(model, ctx)
    model.eval()
    result.seconds = time.perf_counter() - t0
    result.optimizer_state = optimizer_state_tensors(opt, model)
    return result
