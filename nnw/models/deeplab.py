"""DeepLabV3 for semantic segmentation on Cityscapes (NNW-TEC §6.1, ref. [12]).

Chen et al., "Rethinking Atrous Convolution for Semantic Image Segmentation", 2017,
as torchvision builds it (``deeplabv3_mobilenet_v3_large`` / ``deeplabv3_resnet50``)
with ``weights=None, weights_backbone=None`` (nothing is ever downloaded) and
``aux_loss`` off. NNW-TEC names only "DeepLabV3 [12]" on Cityscapes, no backbone;
the default here is MobileNetV3-Large (CPU-friendly), ResNet-50 is the other
torchvision option. ``num_classes=19`` is Cityscapes' train-id label set.
At ``width=1`` the module has the same parameter names and shapes as
torchvision's builders (checked in tests/test_models.py).

Reduced sizes for the embedded profile keep the topology (backbone stages,
dilation, ASPP with rates 12/24/36 and image pooling, 3x3 head conv):

* ``mobilenet_v3_large``: ``width`` is MobileNetV3's ``width_mult`` (channels
  rounded to multiples of 8 by torchvision);
* ``resnet50``: ``width`` scales the stem and every stage's planes (64/128/256/512,
  bottleneck expansion 4), same [3, 4, 6, 3] blocks and dilations;
* both: the ASPP/head channel count is ``round(256 * width)`` unless
  ``aspp_channels`` is given.

:class:`DeepLabV3Logits` returns the ``"out"`` logits tensor (N, num_classes, H, W)
rather than torchvision's dict. This module imports torchvision; ``nnw.models``
imports it only when a DeepLabV3 is built.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models import mobilenet_v3_large
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.resnet import Bottleneck, ResNet, resnet50
from torchvision.models.segmentation.deeplabv3 import ASPP, DeepLabV3

from nnw.layers import check_width, scale_channels

BACKBONES: tuple[str, ...] = ("mobilenet_v3_large", "resnet50")


class DeepLabV3Logits(DeepLabV3):
    """torchvision ``DeepLabV3`` whose forward returns the logits tensor, not a dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x)["out"]


def deeplab_head(in_channels: int, num_classes: int, channels: int = 256,
                 atrous_rates: Sequence[int] = (12, 24, 36)) -> nn.Sequential:
    """torchvision's ``DeepLabHead`` with a configurable channel count (256 there)."""
    return nn.Sequential(
        ASPP(in_channels, atrous_rates, channels),
        nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
        nn.Conv2d(channels, num_classes, 1),
    )


def _mobilenet_backbone(width: float) -> tuple[nn.Module, int]:
    """As ``_deeplabv3_mobilenetv3``: the features up to C5 (output stride 16)."""
    features = mobilenet_v3_large(weights=None, dilated=True, width_mult=width).features
    stage_indices = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)] + [len(features) - 1]
    out_pos = stage_indices[-1]
    out_channels = features[out_pos].out_channels
    return IntermediateLayerGetter(features, return_layers={str(out_pos): "out"}), out_channels


def _resnet50_backbone(width: float, output_stride: int = 8) -> tuple[nn.Module, int]:
    """ResNet-50 with dilated layer3/layer4 (output stride 8; 4 dilates layer2 too, 16 only layer4),
    planes scaled by ``width``."""
    dilation = {4: [True, True, True], 8: [False, True, True], 16: [False, False, True]}[output_stride]
    if width == 1.0:
        net: ResNet = resnet50(weights=None, replace_stride_with_dilation=dilation)
    else:
        net = ResNet(Bottleneck, [3, 4, 6, 3], replace_stride_with_dilation=dilation)
        stem = scale_channels(64, width)
        net.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
        net.bn1 = nn.BatchNorm2d(stem)
        net.inplanes, net.dilation = stem, 1
        net.layer1 = net._make_layer(Bottleneck, scale_channels(64, width), 3)
        net.layer2 = net._make_layer(Bottleneck, scale_channels(128, width), 4, stride=2, dilate=dilation[0])
        net.layer3 = net._make_layer(Bottleneck, scale_channels(256, width), 6, stride=2, dilate=dilation[1])
        net.layer4 = net._make_layer(Bottleneck, scale_channels(512, width), 3, stride=2, dilate=dilation[2])
        net.fc = nn.Linear(net.inplanes, 1000)  # dropped by IntermediateLayerGetter
        for m in net.modules():  # torchvision ResNet's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
    out_channels = net.layer4[-1].conv3.out_channels
    return IntermediateLayerGetter(net, return_layers={"layer4": "out"}), out_channels


def deeplabv3(
    backbone: str = "mobilenet_v3_large",
    num_classes: int = 19,
    width: float = 1.0,
    aspp_channels: int | None = None,
    atrous_rates: Sequence[int] = (12, 24, 36),
    output_stride: int | None = None,
) -> DeepLabV3Logits:
    """Build DeepLabV3 (random init, no aux head); forward returns (N, num_classes, H, W) logits.

    ``output_stride``: the backbone's (torchvision's: 16 for MobileNetV3, the only one it offers; 8 for
    ResNet-50, which also takes 4 and 16 here — 4 suits small inputs such as the embedded 64 x 64 scenes).
    """
    if backbone not in BACKBONES:
        raise ValueError(f"unknown DeepLabV3 backbone {backbone!r}; expected one of {list(BACKBONES)}")
    allowed = (16,) if backbone == "mobilenet_v3_large" else (4, 8, 16)
    if output_stride is not None and output_stride not in allowed:
        raise ValueError(f"DeepLabV3 {backbone} output_stride must be one of {allowed}, got {output_stride!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    width = check_width(width)
    channels = scale_channels(256, width) if aspp_channels is None else int(aspp_channels)
    if channels < 1:
        raise ValueError(f"aspp_channels must be >= 1, got {aspp_channels!r}")
    if backbone == "mobilenet_v3_large":
        body, in_channels = _mobilenet_backbone(width)
    else:
        body, in_channels = _resnet50_backbone(width, output_stride or 8)
    return DeepLabV3Logits(body, deeplab_head(in_channels, num_classes, channels, atrous_rates), None)


__all__ = ["deeplabv3", "DeepLabV3Logits", "deeplab_head", "BACKBONES"]
