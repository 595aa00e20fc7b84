"""ResNet8 for CIFAR-10 (NNW-TEC §6.1, ref. [13]).

The architecture is MLPerf Tiny's ``resnet_v1_eembc`` (Keras ResNet v1, depth 8):

* stem: conv3x3/16 - BN - ReLU
* three basic blocks (16 stride 1, 32 stride 2, 64 stride 2), each
  conv3x3 - BN - ReLU - conv3x3 - BN, plus a shortcut (identity on the first
  block, conv1x1 with the block's stride on the other two), add, ReLU
* global average pool, Linear(64, num_classes)

Decisions (so that the model is the Keras one, transcribed):

* Keras ``Conv2D`` layers default to ``use_bias=True`` and the reference does
  not switch that off, so every conv here has a bias. With biases the model has
  **78,186** trainable parameters at width 1, which is exactly the "Trainable
  params" figure of the Keras summary (78,666 total there, the 480 extra being
  BatchNorm moving means/variances, which are buffers in PyTorch). Without
  biases it would be 77,850; both round to the quoted "~78k", the Keras
  summary settles it.
* Keras ``padding="same"`` with stride 2 pads 0 before and 1 after an
  even-sized input, so the strided 3x3 conv is centred on odd pixels. PyTorch's
  symmetric ``padding=1`` would shift it by one pixel; :class:`Conv2dSame`
  reproduces TF/Keras padding exactly.
* BatchNorm uses Keras defaults (``momentum=0.99`` i.e. PyTorch ``momentum=0.01``,
  ``epsilon=1e-3``; ``bn_momentum`` overrides the momentum: short trainings of a few hundred steps
  need PyTorch's 0.1, or the running statistics still remember their initial values); weights use Keras ``he_normal`` (truncated normal,
  std = sqrt(2 / fan_in) / 0.8796), biases zero, as in the reference.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nnw.layers import scale_channels

_BN_MOMENTUM = 0.01  # Keras momentum 0.99
_BN_EPS = 1e-3  # Keras epsilon


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow/Keras ``padding="same"`` (asymmetric when needed)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == (1, 1) and self.kernel_size[0] % 2 == 1 and self.kernel_size[1] % 2 == 1:
            # stride 1, odd kernel: "same" is symmetric, so the conv pads by itself (no padded copy)
            return F.conv2d(x, self.weight, self.bias, 1, (self.kernel_size[0] // 2, self.kernel_size[1] // 2),
                            self.dilation, self.groups)
        pads: list[int] = []
        # F.pad takes (left, right, top, bottom): last dimension first.
        for size, k, s in ((x.shape[-1], self.kernel_size[1], self.stride[1]),
                           (x.shape[-2], self.kernel_size[0], self.stride[0])):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int, momentum: float = _BN_MOMENTUM) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=momentum)


class BasicBlock(nn.Module):
    """Keras ResNet v1 basic block: conv-BN-ReLU-conv-BN + shortcut, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, bn_momentum: float = _BN_MOMENTUM) -> None:
        super().__init__()
        self.conv1 = Conv2dSame(in_channels, out_channels, 3, stride)
        self.bn1 = _bn(out_channels, bn_momentum)
        self.conv2 = Conv2dSame(out_channels, out_channels, 3, 1)
        self.bn2 = _bn(out_channels, bn_momentum)
        # First block: identity; the strided blocks: 1x1 conv (no BN), as in resnet_v1_eembc.
        self.shortcut: nn.Module = (
            Conv2dSame(in_channels, out_channels, 1, stride)
            if stride != 1 or in_channels != out_channels
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class ResNet8(nn.Module):
    """ResNet8 (MLPerf Tiny ``resnet_v1_eembc``); ``width`` scales the 16/32/64 channels,
    ``bn_momentum`` is PyTorch's BatchNorm momentum (Keras default 0.01)."""

    def __init__(self, num_classes: int = 10, width: float = 1.0, in_channels: int = 3,
                 bn_momentum: float = _BN_MOMENTUM) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not 0.0 < bn_momentum <= 1.0:
            raise ValueError(f"bn_momentum must be in (0, 1], got {bn_momentum}")
        c1, c2, c3 = (scale_channels(c, width) for c in (16, 32, 64))
        self.conv1 = Conv2dSame(in_channels, c1, 3, 1)
        self.bn1 = _bn(c1, bn_momentum)
        self.layer1 = BasicBlock(c1, c1, 1, bn_momentum)
        self.layer2 = BasicBlock(c1, c2, 2, bn_momentum)
        self.layer3 = BasicBlock(c2, c3, 2, bn_momentum)
        self.fc = nn.Linear(c3, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Keras ``he_normal`` kernels (truncated at 2 std), zero biases, BN gamma=1 beta=0."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                std = math.sqrt(2.0 / fan_in) / 0.87962566103423978
                nn.init.trunc_normal_(m.weight, 0.0, std, -2 * std, 2 * std)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.fc(x)


__all__ = ["ResNet8", "BasicBlock", "Conv2dSame"]
