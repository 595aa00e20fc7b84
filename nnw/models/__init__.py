"""Reference models of NNW-TEC §6.1 and a registry to build them by name.

| name      | task (NNW-TEC §6.1, Table 1)         | class / builder                       |
|-----------|--------------------------------------|---------------------------------------|
| ResNet8   | CIFAR-10 classification               | :class:`~nnw.models.resnet8.ResNet8`  |
| VGG16     | CIFAR-10 classification               | :class:`~nnw.models.vgg16.VGG16`      |
| RDN       | DIV2K super-resolution                | :class:`~nnw.models.rdn.RDN`          |
| Pix2pix   | Cityscapes image-to-image (generator) | :class:`~nnw.models.pix2pix.Pix2pixGenerator` |
| PatchGAN  | pix2pix's discriminator               | :class:`~nnw.models.pix2pix.PatchGANDiscriminator` |
| DeepLabV3 | Cityscapes segmentation               | :func:`~nnw.models.deeplab.deeplabv3` |

Every builder takes a ``width`` multiplier so the embedded CPU profile runs the
same topologies at small sizes. torchvision is imported only when a DeepLabV3 is
built (:mod:`nnw.models.deeplab`), keeping ``import nnw.models`` cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nnw.models.pix2pix import PatchGANDiscriminator, Pix2pixGenerator
from nnw.models.rdn import RDN
from nnw.models.resnet8 import ResNet8
from nnw.models.vgg16 import VGG16


def _build_deeplabv3(**kwargs: Any) -> nn.Module:
    """Lazy wrapper: imports torchvision only here (see :func:`nnw.models.deeplab.deeplabv3`)."""
    from nnw.models.deeplab import deeplabv3 as _deeplabv3

    return _deeplabv3(**kwargs)


def deeplabv3(backbone: str = "mobilenet_v3_large", num_classes: int = 19, width: float = 1.0,
              **kwargs: Any) -> nn.Module:
    """DeepLabV3 returning logits (NNW-TEC §6.1); see :func:`nnw.models.deeplab.deeplabv3`."""
    return _build_deeplabv3(backbone=backbone, num_classes=num_classes, width=width, **kwargs)


#: Registry of the NNW-TEC §6.1 models: name -> builder(**kwargs) -> nn.Module.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "ResNet8": ResNet8,
    "VGG16": VGG16,
    "RDN": RDN,
    "Pix2pix": Pix2pixGenerator,
    "PatchGAN": PatchGANDiscriminator,
    "DeepLabV3": _build_deeplabv3,
}


def build_model(name: str, seed: int | None = None, **kwargs: Any) -> nn.Module:
    """Build registered model ``name`` with constructor ``kwargs``.

    With ``seed`` the initial weights are a function of the seed alone and the
    global torch RNG state is left untouched. Unknown names raise ``ValueError``.
    """
    try:
        builder = MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}") from None
    if seed is None:
        return builder(**kwargs)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return builder(**kwargs)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (shared tensors counted once; buffers excluded)."""
    return sum(int(p.numel()) for p in model.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "MODELS",
    "build_model",
    "count_parameters",
    "deeplabv3",
    "ResNet8",
    "VGG16",
    "RDN",
    "Pix2pixGenerator",
    "PatchGANDiscriminator",
]
