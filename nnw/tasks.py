"""The four tasks of NNW-TEC §6.1 / Table 1, each binding model, dataset, loss and performance measure.

| task           | models            | dataset (spec / embedded)        | performance (Table 1) |
|----------------|-------------------|----------------------------------|-----------------------|
| classification | VGG16, ResNet8    | CIFAR-10 / photo patches         | Top-1, classification error |
| generation     | Pix2pix           | Cityscapes / procedural streets  | PSNR and SSIM (global) |
| upsampling     | RDN               | DIV2K / photo patches x2         | PSNR and SSIM (global) |
| segmentation   | DeepLabV3         | Cityscapes / procedural streets  | mIoU |

``Task.evaluate`` returns every measure; ``Task.performance_keys`` names the ones Impact
(NNW-TEC eq. 1) and the relative error (eq. 2) are computed on: Table 1's, so a classifier's
Impact is the relative variation of its *classification error*, as Table 22's header and every
published classification value have it (Top-1 is recorded beside it).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
import torch.nn.functional as F

from nnw.training import Recipe

KINDS = ("classification", "segmentation", "upsampling", "generation")
PERFORMANCE_KEYS = {
    "classification": ("error",),   # Table 1: classification error = 1 − Top-1 (lower is better)
    "segmentation": ("miou",),
    "upsampling": ("psnr", "ssim"),
    "generation": ("psnr", "ssim"),
}


@contextlib.contextmanager
def seeded(seed: int):
    """Run a block (model initialization) under a fixed global torch seed, restoring the RNG after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class _ClassificationLoss:
    def __init__(self, label_smoothing: float):
        self.label_smoothing = label_smoothing

    def __call__(self, out, y, x):
        return F.cross_entropy(out.float(), y, label_smoothing=self.label_smoothing)


class _SegmentationLoss:
    def __init__(self, weight: torch.Tensor | None = None):
        self.weight = weight

    def __call__(self, out, y, x):
        return F.cross_entropy(out.float(), y, weight=self.weight, ignore_index=255)


def class_weights(labels: torch.Tensor, num_classes: int, scheme: str) -> torch.Tensor:
    """Per-class loss weights from training label maps: ``"sqrt_inverse_frequency"`` weighs class c by
    sqrt(median frequency / frequency of c) over the classes present (absent ones: 1), so thin classes
    (poles, signs, persons) are not drowned by road and sky. float32, a function of the labels only."""
    if scheme != "sqrt_inverse_frequency":
        raise ValueError(f"unknown class_weights {scheme!r}: expected 'sqrt_inverse_frequency' or none")
    counts = torch.bincount(labels[labels != 255].flatten(), minlength=num_classes)[:num_classes].double()
    present = counts > 0
    freq = counts / counts.sum()
    weight = torch.ones(num_classes, dtype=torch.float64)
    weight[present] = (freq[present].median() / freq[present]).sqrt()
    return weight.float()


class _L1Loss:
    def __call__(self, out, y, x):
        return F.l1_loss(out.float(), y)


class Pix2pixLoss:
    """pix2pix objective (Isola et al. 2017): G minimizes BCE(D(x, G(x)), real) + λ·L1(G(x), y);
    D (a 70x70 PatchGAN) is stepped after each generator step on real and detached fake pairs."""

    def __init__(self, discriminator: torch.nn.Module, lr: float, betas: tuple[float, float], l1_weight: float = 100.0):
        self.d = discriminator
        self.opt = torch.optim.Adam(self.d.parameters(), lr=lr, betas=betas)
        self.l1_weight = l1_weight

    def __call__(self, out, y, x):
        logits = self.d(torch.cat([x, out], 1))
        adv = F.binary_cross_entropy_with_logits(logits.float(), torch.ones_like(logits, dtype=torch.float32))
        return adv + self.l1_weight * F.l1_loss(out.float(), y)

    def after_step(self, out, y, x):
        fake = out.detach()
        real_logits = self.d(torch.cat([x, y.to(fake.dtype)], 1)).float()
        fake_logits = self.d(torch.cat([x, fake], 1)).float()
        loss = 0.5 * (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                      + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


@dataclass
class Task:
    """A model architecture + dataset + loss + performance measure (NNW-TEC §6.1)."""

    name: str                      # the profile's entry name, e.g. "ResNet8"
    kind: str                      # one of KINDS
    model_name: str
    model_kwargs: dict[str, Any]
    recipe: Recipe
    train: Any                     # nnw.data ImageSet
    test: Any
    num_classes: int | None = None
    data_spec: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown task kind {self.kind!r}: expected one of {KINDS}")

    # -- model -------------------------------------------------------------------------
    def build_model(self, seed: int) -> torch.nn.Module:
        """The task's model, initialized deterministically from ``seed``."""
        from nnw.models import build_model

        with seeded(seed):
            return build_model(self.model_name, **self.model_kwargs)

    # -- data transforms ---------------------------------------------------------------
    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images -> the model's float input."""
        x = x.float()
        if self.kind == "classification":
            return (x / 255.0 - 0.5) / 0.25
        if self.kind == "segmentation":
            return (x / 255.0 - 0.45) / 0.25
        if self.kind == "upsampling":
            return x / 255.0
        return x / 127.5 - 1.0  # generation: pix2pix works in [-1, 1]

    def target(self, y: torch.Tensor) -> torch.Tensor:
        if self.kind in ("classification", "segmentation"):
            return y.long()
        if self.kind == "upsampling":
            return y.float() / 255.0
        return y.float() / 127.5 - 1.0

    def to_image(self, out: torch.Tensor) -> torch.Tensor:
        """Model output -> 0..255 float images (upsampling and generation)."""
        if self.kind == "upsampling":
            return (out.float().clamp(0, 1) * 255.0).round()
        return ((out.float().clamp(-1, 1) + 1.0) * 127.5).round()

    def make_loss(self, device: torch.device):
        if self.kind == "classification":
            return _ClassificationLoss(self.recipe.label_smoothing)
        if self.kind == "segmentation":
            scheme = self.recipe.class_weights
            weight = None if scheme is None else class_weights(self.train.y, self.num_classes or 19, scheme).to(device)
            return _SegmentationLoss(weight)
        if self.kind == "upsampling":
            return _L1Loss()
        from nnw.models import build_model

        kw = {k: v for k, v in self.model_kwargs.items() if k in ("width",)}
        with seeded(12345):
            d = build_model("PatchGAN", **kw).to(device)
        return Pix2pixLoss(d, self.recipe.lr, self.recipe.betas)

    # -- performance -------------------------------------------------------------------
    @property
    def performance_keys(self) -> tuple[str, ...]:
        """The measures Impact and relative error are computed on (NNW-TEC Table 1)."""
        return PERFORMANCE_KEYS[self.kind]

    @torch.no_grad()
    def predict(self, model: torch.nn.Module, x: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
        """Model outputs (float32) on uint8 inputs ``x``, in the training's numerics path: bf16 autocast
        where :func:`nnw.device.use_bf16` allows it, channels_last inputs when the recipe sets it.
        Batches of 250: on one CPU core larger ones fall out of cache (ResNet8: 1.4x slower at 500)."""
        from nnw.device import use_bf16
        from nnw.fold import fold_batchnorm

        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        folded = fold_batchnorm(model)  # the same function, BatchNorm folded into its convolutions
        outs = []
        autocast = use_bf16(device, self.recipe.bf16)
        for i in range(0, len(x), batch_size):
            xb = self.prepare(x[i:i + batch_size].to(device))
            if self.recipe.channels_last and xb.dim() == 4:
                xb = xb.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast):
                outs.append(folded(xb).float())
        model.train(was_training)
        return torch.cat(outs)

    def evaluate(self, model: torch.nn.Module, data: Any = None) -> dict[str, float]:
        """Performance of ``model`` on the test set (or ``data``): the measures of Table 1."""
        from nnw import metrics

        data = self.test if data is None else data
        out = self.predict(model, data.x)
        y = data.y.to(out.device)
        if self.kind == "classification":
            top1 = metrics.topk_accuracy(out, y, k=1)
            return {"top1": top1, "error": 1.0 - top1}
        if self.kind == "segmentation":
            return {"miou": metrics.mean_iou(out.argmax(1), y, num_classes=self.num_classes, ignore_index=255)}
        img = self.to_image(out)
        ref = y.float()
        return {"psnr": metrics.psnr(img, ref), "ssim": metrics.ssim_global(img, ref)}

    def spec(self) -> dict[str, Any]:
        """What identifies this task's trained models in the cache."""
        return {"task": self.name, "task_kind": self.kind, "model": self.model_name,
                "model_kwargs": self.model_kwargs, "recipe": self.recipe.as_dict(), "data": self.data_spec}


def build_task(name: str, entry: Mapping[str, Any], data_root: str | None = None) -> Task:
    """Build a Task from a profile entry (see nnw/profiles/*.json)."""
    from nnw import data as D

    kind = entry["task"]
    dspec = dict(entry["data"])
    source = dspec.get("source", "embedded")
    seed = dspec.get("seed", 0)
    num_classes = None
    if source == "embedded":
        if kind == "classification":
            extra = {k: (tuple(dspec[k]) if k == "scale_range" else dspec[k])
                     for k in ("classes", "scale_range", "jitter", "layout") if k in dspec}
            train, test = D.embedded_classification(seed=seed, n_train=dspec["n_train"], n_test=dspec["n_test"],
                                                    size=dspec.get("size", 32), **extra)
            num_classes = len(train.meta["classes"])
        elif kind == "segmentation":
            train, test = D.embedded_segmentation(seed=seed, n_train=dspec["n_train"], n_test=dspec["n_test"],
                                                  size=dspec.get("size", 64), style=dspec.get("style", "varied"))
            num_classes = 19
        elif kind == "upsampling":
            train, test = D.embedded_superres(seed=seed, n_train=dspec["n_train"], n_test=dspec["n_test"],
                                              hr_size=dspec.get("size", 32), scale=dspec.get("scale", 2))
        else:
            train, test = D.embedded_generation(seed=seed, n_train=dspec["n_train"], n_test=dspec["n_test"],
                                                size=dspec.get("size", 64), style=dspec.get("style", "varied"))
    else:
        if data_root is None:
            raise D.DataRootError(
                f"task {name!r} reads the {source} dataset from a local data root, but none was given: "
                f"pass --nnw-data-root DIR (nothing is ever downloaded)")
        from pathlib import Path

        root = Path(data_root)
        if source == "cifar10":
            train, test = D.load_cifar10(root, train=True), D.load_cifar10(root, train=False)
            num_classes = 10
        elif source == "cityscapes" and kind == "segmentation":
            size = tuple(dspec["size"]) if "size" in dspec else None
            train = D.load_cityscapes(root, "train", size=size, limit=dspec.get("n_train"))
            test = D.load_cityscapes(root, "val", size=size, limit=dspec.get("n_test"))
            num_classes = 19
        elif source == "cityscapes":  # generation: label map (colourized) -> photo
            size = tuple(dspec["size"]) if "size" in dspec else None
            tr = D.load_cityscapes(root, "train", size=size, limit=dspec.get("n_train"))
            te = D.load_cityscapes(root, "val", size=size, limit=dspec.get("n_test"))
            train = D.ImageSet(D.colorize_trainids(tr.y), tr.x, dict(tr.meta))
            test = D.ImageSet(D.colorize_trainids(te.y), te.x, dict(te.meta))
        elif source == "div2k":
            train = D.load_div2k(root, "train", scale=dspec.get("scale", 2), patch=dspec.get("patch", 96), seed=seed)
            test = D.load_div2k(root, "valid", scale=dspec.get("scale", 2), patch=dspec.get("patch", 96), seed=seed)
        else:
            raise ValueError(f"task {name!r}: unknown data source {source!r}")
        n_train, n_test = dspec.get("n_train"), dspec.get("n_test")
        if n_train:
            train = train.subset(n_train)
        if n_test:
            test = test.subset(n_test)
    return Task(name=name, kind=kind, model_name=entry["model"], model_kwargs=dict(entry.get("model_kwargs", {})),
                recipe=Recipe.from_dict(entry["recipe"]), train=train, test=test, num_classes=num_classes,
                data_spec=dspec)
