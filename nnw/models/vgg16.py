"""VGG16 for CIFAR-10 (NNW-TEC §6.1, ref. [14]).

The usual CIFAR adaptation of Simonyan & Zisserman's configuration D: 13 conv3x3
layers (with bias) each followed by BatchNorm and ReLU, max-pooling after each
stage (cfg 64,64,M,128,128,M,256,256,256,M,512,512,512,M,512,512,512,M), so a
32x32 input ends as a 512x1x1 feature, and a single Linear(512, num_classes)
classifier. At width 1 it has exactly 14,728,266 parameters (conv weights and
biases, BatchNorm affine weights, classifier), the figure commonly quoted for
VGG16 on CIFAR-10.
"""

from __future__ import annotations

import torch
from torch import nn

from nnw.layers import scale_channels

#: Configuration D: channel counts, "M" = 2x2 max-pool.
VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)


class VGG16(nn.Module):
    """VGG16-BN for 32x32 inputs; ``width`` scales every conv's channel count."""

    def __init__(self, num_classes: int = 10, width: float = 1.0, in_channels: int = 3) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        layers: list[nn.Module] = []
        channels = in_channels
        for v in VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                out = scale_channels(int(v), width)
                layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
                channels = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He (fan_out) init for convs, N(0, 0.01) for the classifier, BN gamma=1 beta=0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        # 32x32 inputs give 1x1 here; the global pool keeps other sizes usable.
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.classifier(x)


__all__ = ["VGG16", "VGG16_CFG"]
