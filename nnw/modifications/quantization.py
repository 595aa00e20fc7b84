"""Quantization (NNW-NNT Modification table; IEEE 3304 table; NNW-TEC §7.2.6).

"A Modification that compresses a watermarked NN Model by reducing the number of
bits of the floating representation of the Weights" (NNW-TEC §3). NNW-TEC's grid is
B in [2, 16]; the IEEE 3304 table allows 32–2 bits on 1..all layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from nnw.modifications.base import WeightModification, check_int, register

MIN_BITS = 2
MAX_BITS = 32


def quantize_tensor(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Uniform affine per-tensor quantization of ``w`` to ``bits`` bits, dequantized.

    Range: ``[min(w), max(w)]`` split into ``2**bits`` levels with
    ``step = (max - min) / (2**bits - 1)``; ``q = round((w - min) / step)`` with
    ``torch.round`` (round half to even), clamped to ``[0, 2**bits - 1]``; result
    ``min + q * step`` computed in float64 and cast back to ``w.dtype``. A constant
    tensor is returned unchanged. The error per weight is at most ``step / 2`` (plus
    the final cast's rounding).
    """
    bits = check_int("B", bits, low=MIN_BITS, high=MAX_BITS, what="number of bits")
    x = w.detach().to(torch.float64, copy=True)
    if x.numel() == 0:
        return w.detach().clone()
    lo, hi = (float(v) for v in torch.aminmax(x))
    if hi == lo:
        return w.detach().clone()
    levels = 2**bits - 1
    step = (hi - lo) / levels
    x.sub_(lo).div_(step).round_().clamp_(0, levels).mul_(step).add_(lo)
    return x.to(w.dtype)


@register
class Quantization(WeightModification):
    """``quantization(B=...)``: per-tensor uniform min–max quantization of each selected layer to B bits.

    See :func:`quantize_tensor` for range and rounding. B is an integer in 2..32.
    """

    family: ClassVar[str] = "quantization"

    def __init__(self, B: int, layers: Sequence[str] | str | None = None) -> None:
        b = check_int("B", B, low=MIN_BITS, high=MAX_BITS, what="number of bits")
        super().__init__({"B": b}, layers=layers)

    @property
    def B(self) -> int:
        return self._params["B"]

    def modify_weights(self, layers: dict[str, nn.Parameter], *, seed: int) -> None:
        for weight in layers.values():
            weight.copy_(quantize_tensor(weight, self.B))


__all__ = ["MAX_BITS", "MIN_BITS", "Quantization", "quantize_tensor"]
