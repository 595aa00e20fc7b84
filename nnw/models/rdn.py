"""RDN, Residual Dense Network for image super-resolution (NNW-TEC §6.1, ref. [10]).

Zhang, Tian, Kong, Zhong, Fu, "Residual Dense Network for Image Super-Resolution",
CVPR 2018, transcribed as in the authors' PyTorch port (EDSR-PyTorch ``rdn.py``):

* shallow features: SFENet1 conv3x3 n_colors->G0, SFENet2 conv3x3 G0->G0
* D residual dense blocks; each has C conv3x3+ReLU layers whose inputs are the
  concatenation of the block input and every previous layer's output
  (G0 + c*G -> G), a 1x1 local feature fusion (G0 + C*G -> G0) and a local
  residual connection
* global feature fusion: conv1x1 D*G0->G0, conv3x3 G0->G0, plus the global
  residual from SFENet1
* sub-pixel upsampler: conv3x3 G0->G*r^2, PixelShuffle(r), conv3x3 G->n_colors
  (for x4, two x2 stages)

All convs have biases; there is no normalisation and no mean shift.

``upsample_skip="bicubic"`` (off by default; the embedded profile sets it) adds the bicubic
up-sampling of the input to the output, so the network learns only the residual detail: with the
last conv initialised to zero the untrained model *is* bicubic up-sampling, and a few hundred
steps improve on it (without the skip, such short trainings stay ~8 dB below bicubic).
Standard configuration (D, C, G, G0) = (16, 8, 64, 64) at x2 has
**22,123,395** parameters:

* SFE: 3*64*9+64 + 64*64*9+64 = 1,792 + 36,928 = 38,720
* one RDB: sum_{c=0..7} ((64+64c)*64*9 + 64) + (64+8*64)*64 + 64
  = 1,327,616 + 36,928 = 1,364,544; times 16 = 21,832,704
* GFF: 1024*64+64 + 64*64*9+64 = 65,600 + 36,928 = 102,528
* UPNet x2: 64*256*9+256 + 64*3*9+3 = 147,712 + 1,731 = 149,443

i.e. the "~22.1M" quoted for RDN at x2 (x3: 22,308,035, x4: 22,271,107).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nnw.layers import scale_channels


class DenseLayer(nn.Module):
    """One RDB conv: conv3x3 + ReLU whose output is concatenated to its input."""

    def __init__(self, in_channels: int, growth: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, growth, kernel_size, padding=(kernel_size - 1) // 2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.relu(self.conv(x))), 1)


class ResidualDenseBlock(nn.Module):
    """RDB: C densely connected layers, 1x1 local feature fusion, local residual."""

    def __init__(self, num_features: int, growth: int, num_layers: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            *(DenseLayer(num_features + c * growth, growth, kernel_size) for c in range(num_layers))
        )
        self.lff = nn.Conv2d(num_features + num_layers * growth, num_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lff(self.convs(x)) + x


class RDN(nn.Module):
    """Residual Dense Network.

    ``num_blocks`` = D, ``num_layers`` = C, ``growth`` = G, ``num_features`` = G0 of
    the paper; ``width`` multiplies G and G0 (reduced sizes for the embedded profile).
    """

    def __init__(
        self,
        scale: int = 2,
        num_blocks: int = 16,
        num_layers: int = 8,
        growth: int = 64,
        num_features: int = 64,
        n_colors: int = 3,
        width: float = 1.0,
        kernel_size: int = 3,
        upsample_skip: str | None = None,
    ) -> None:
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"RDN scale must be 2, 3 or 4, got {scale!r}")
        if upsample_skip not in (None, "bicubic"):
            raise ValueError(f"RDN upsample_skip must be None or 'bicubic', got {upsample_skip!r}")
        self.upsample_skip = upsample_skip
        for name, value in (("num_blocks", num_blocks), ("num_layers", num_layers),
                            ("growth", growth), ("num_features", num_features), ("n_colors", n_colors)):
            if int(value) < 1:
                raise ValueError(f"RDN {name} must be >= 1, got {value!r}")
        g0 = scale_channels(num_features, width)
        g = scale_channels(growth, width)
        pad = (kernel_size - 1) // 2
        self.scale = scale
        self.sfe1 = nn.Conv2d(n_colors, g0, kernel_size, padding=pad)
        self.sfe2 = nn.Conv2d(g0, g0, kernel_size, padding=pad)
        self.rdbs = nn.ModuleList(
            ResidualDenseBlock(g0, g, num_layers, kernel_size) for _ in range(num_blocks)
        )
        self.gff = nn.Sequential(
            nn.Conv2d(num_blocks * g0, g0, 1),
            nn.Conv2d(g0, g0, kernel_size, padding=pad),
        )
        if scale in (2, 3):
            self.upnet = nn.Sequential(
                nn.Conv2d(g0, g * scale * scale, kernel_size, padding=pad),
                nn.PixelShuffle(scale),
                nn.Conv2d(g, n_colors, kernel_size, padding=pad),
            )
        else:
            self.upnet = nn.Sequential(
                nn.Conv2d(g0, g * 4, kernel_size, padding=pad),
                nn.PixelShuffle(2),
                nn.Conv2d(g, g * 4, kernel_size, padding=pad),
                nn.PixelShuffle(2),
                nn.Conv2d(g, n_colors, kernel_size, padding=pad),
            )

        if upsample_skip is not None:  # start from the skip itself: the last conv adds nothing yet
            nn.init.zeros_(self.upnet[-1].weight)
            nn.init.zeros_(self.upnet[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample_skip is not None:
            skip = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
            return self._body(x) + skip
        return self._body(x)

    def _body(self, x: torch.Tensor) -> torch.Tensor:
        f1 = self.sfe1(x)
        h = self.sfe2(f1)
        outs = []
        for rdb in self.rdbs:
            h = rdb(h)
            outs.append(h)
        h = self.gff(torch.cat(outs, 1)) + f1
        return self.upnet(h)


__all__ = ["RDN", "ResidualDenseBlock", "DenseLayer"]
