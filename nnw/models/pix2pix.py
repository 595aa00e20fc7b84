"""Pix2pix generator (U-Net) and 70x70 PatchGAN discriminator (NNW-TEC §6.1, ref. [9]).

Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks",
CVPR 2017, transcribed from the authors' PyTorch reference implementation
(``pytorch-CycleGAN-and-pix2pix``, ``networks.py``) with its pix2pix defaults:
``--netG unet_256 --norm batch --netD basic`` and dropout on (no ``--no_dropout``).

* Convs followed by BatchNorm have no bias (``use_bias = norm is InstanceNorm``);
  the outermost up-convolution and the discriminator's first and last convs do.
* Module nesting mirrors the reference (``model.model.1.model...``) so its
  ``state_dict`` keys match a reference checkpoint.
* Initialisation ``init_type="normal"``, gain 0.02: conv weights N(0, 0.02),
  BatchNorm weights N(1, 0.02), biases 0.

Parameter counts at the defaults: generator (unet_256) 54,413,955; 70x70
PatchGAN (in_channels 6) 2,768,705 (the reference prints 54.414 M and 2.769 M).
"""

from __future__ import annotations

import torch
from torch import nn

from nnw.layers import scale_channels


class UnetSkipConnectionBlock(nn.Module):
    """One U-Net level: down-conv, inner submodule, up-conv, and the skip concat."""

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
        use_dropout: bool = False,
    ) -> None:
        super().__init__()
        self.outermost = outermost
        if input_nc is None:
            input_nc = outer_nc
        downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=False)
        downrelu = nn.LeakyReLU(0.2, True)
        downnorm = nn.BatchNorm2d(inner_nc)
        uprelu = nn.ReLU(True)
        upnorm = nn.BatchNorm2d(outer_nc)
        if outermost:
            if submodule is None:
                raise ValueError("the outermost U-Net block needs a submodule")
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
            layers: list[nn.Module] = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=False)
            layers = [downrelu, downconv, uprelu, upconv, upnorm]
        else:
            if submodule is None:
                raise ValueError("an intermediate U-Net block needs a submodule")
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=False)
            layers = [downrelu, downconv, downnorm, submodule, uprelu, upconv, upnorm]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


def _init_normal(module: nn.Module, gain: float = 0.02) -> None:
    """pix2pix ``init_weights(net, "normal", 0.02)``."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


class Pix2pixGenerator(nn.Module):
    """U-Net generator; ``num_downs=8`` is unet_256 (a 256x256 input reaches 1x1).

    Inputs must have height and width divisible by ``2**num_downs``. ``width``
    multiplies ``ngf``; smaller ``num_downs`` (>= 5) fits smaller images.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        num_downs: int = 8,
        use_dropout: bool = True,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"Pix2pixGenerator needs num_downs >= 5 (the U-Net has 5 fixed levels), got {num_downs}")
        if ngf < 1:
            raise ValueError(f"ngf must be >= 1, got {ngf}")
        f = scale_channels(ngf, width)
        self.num_downs = num_downs
        block = UnetSkipConnectionBlock(f * 8, f * 8, innermost=True)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(f * 8, f * 8, submodule=block, use_dropout=use_dropout)
        block = UnetSkipConnectionBlock(f * 4, f * 8, submodule=block)
        block = UnetSkipConnectionBlock(f * 2, f * 4, submodule=block)
        block = UnetSkipConnectionBlock(f, f * 2, submodule=block)
        self.model = UnetSkipConnectionBlock(out_channels, f, input_nc=in_channels, submodule=block, outermost=True)
        _init_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = 2 ** self.num_downs
        if x.dim() != 4 or x.shape[-1] % m or x.shape[-2] % m:
            raise ValueError(
                f"Pix2pixGenerator(num_downs={self.num_downs}) expects (N, C, H, W) with H and W "
                f"divisible by {m}, got shape {tuple(x.shape)}"
            )
        return self.model(x)


class PatchGANDiscriminator(nn.Module):
    """PatchGAN (``NLayerDiscriminator``); ``n_layers=3`` is the 70x70 PatchGAN.

    ``in_channels`` is input + output channels (the conditional pix2pix D sees both).
    ``width`` multiplies ``ndf``. Output: one logit per patch, (N, 1, H', W').
    """

    def __init__(self, in_channels: int = 6, ndf: int = 64, n_layers: int = 3, width: float = 1.0) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"PatchGANDiscriminator needs n_layers >= 1, got {n_layers}")
        f = scale_channels(ndf, width)
        kw, padw = 4, 1
        seq: list[nn.Module] = [nn.Conv2d(in_channels, f, kw, stride=2, padding=padw), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            seq += [
                nn.Conv2d(f * prev, f * mult, kw, stride=2, padding=padw, bias=False),
                nn.BatchNorm2d(f * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        seq += [
            nn.Conv2d(f * prev, f * mult, kw, stride=1, padding=padw, bias=False),
            nn.BatchNorm2d(f * mult),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(f * mult, 1, kw, stride=1, padding=padw),
        ]
        self.model = nn.Sequential(*seq)
        _init_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


__all__ = ["Pix2pixGenerator", "PatchGANDiscriminator", "UnetSkipConnectionBlock"]
