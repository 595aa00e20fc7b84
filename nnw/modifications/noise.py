"""Gaussian noise addition (NNW-NNT Modification table; IEEE 3304 table; NNW-TEC §7.2.6).

Zero-mean Gaussian noise is added to the weights of one to all weight layers; its
standard deviation is ``S`` times the standard deviation of the weights of the
layer it is added to ("Standard Deviation Ratio", spec README item 10). NNW-TEC's
grid is ``S in {.001, .005, .01, .05, .1, .5, 1}``; the IEEE 3304 table allows
0.1–0.3. Any finite ``S >= 0`` is accepted (``S = 0`` leaves the weights unchanged).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from nnw.modifications.base import WeightModification, check_real, layer_generator, register


@register
class GaussianNoise(WeightModification):
    """``noise(S=...)``: add N(0, (S * std(w_l))^2) to every weight of each selected layer l.

    ``std(w_l)`` is ``torch.std`` (Bessel-corrected) of the layer's weights (0 for a
    single weight). The noise is drawn in float32 (float64 for float64 weights) from a
    CPU generator seeded from ``(seed, layer name)`` and moved to the weight's device,
    so the numbers are the same on every device.
    """

    family: ClassVar[str] = "noise"

    def __init__(self, S: float, layers: Sequence[str] | str | None = None) -> None:
        s = check_real("S", S, low=0.0, what="noise standard-deviation ratio")
        super().__init__({"S": s}, layers=layers)

    @property
    def S(self) -> float:
        return self._params["S"]

    def modify_weights(self, layers: dict[str, nn.Parameter], *, seed: int) -> None:
        ratio = self.S
        if ratio == 0.0:
            return
        for name, weight in layers.items():
            if weight.numel() < 2:
                continue
            work_dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
            w = weight.detach()
            sigma = ratio * float(w.to(work_dtype).std())
            if sigma == 0.0:
                continue
            noise = torch.randn(w.shape, generator=layer_generator(seed, name), dtype=work_dtype)
            noise = noise.to(device=w.device)
            if w.dtype == work_dtype:
                weight.add_(noise, alpha=sigma)
            else:
                weight.copy_(w.to(work_dtype).add_(noise, alpha=sigma))


__all__ = ["GaussianNoise"]
