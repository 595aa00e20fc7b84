"""Pruning Modifications (NNW-NNT Modification table; IEEE 3304 table; NNW-TEC §7.2.6).

- :class:`MagnitudePruning` (``pruning``, the table's "L1 Pruning"): "sets to zero a
  percentage P of the Weights ... having the smallest absolute values" (NNW-TEC §3,
  §7.2.6). NNW-TEC's grid is P in [10, 90]; the IEEE 3304 table allows 1–90 %.
- :class:`RandomPruning` (``random_pruning``): sets to zero P % of the weights of each
  layer chosen uniformly at random. The IEEE 3304 table's range is 1–10 %; any P in
  [0, 100] is accepted.

The number of weights pruned out of ``n`` is ``round(P / 100 * n)`` (Python's
round-half-to-even), exactly as ``torch.nn.utils.prune`` computes it for
``amount = P / 100`` (``_compute_nparams_toprune``), so the masks equal those of
``prune.l1_unstructured`` (per layer) and ``prune.global_unstructured`` with
``prune.L1Unstructured`` (global) whenever the magnitudes have no ties. Ties at the
threshold are broken deterministically: every weight strictly below the threshold
is pruned, then the first ones (in ``weight_layers`` order, then flattened index)
equal to it until the count is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from nnw.modifications.base import (
    WeightModification,
    check_choice,
    check_real,
    layer_generator,
    register,
)

SCOPES: tuple[str, ...] = ("global", "layer")

_NUMPY_DTYPES = (torch.float16, torch.float32, torch.float64)


def prune_count(P: float, n: int) -> int:
    """Number of weights to prune out of ``n`` for ``P`` percent: ``round(P / 100 * n)``."""
    return round((P / 100) * n)


def kth_smallest(values: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k``-th smallest entry (1-based) of a 1-D tensor, as a 0-d tensor.

    On the CPU this is ``numpy.partition`` (introselect; about 10x faster than
    ``torch.kthvalue`` on a VGG16-sized vector), elsewhere ``torch.kthvalue``; both
    return the same value.
    """
    if values.device.type == "cpu" and values.dtype in _NUMPY_DTYPES:
        array = values.detach().numpy()
        return torch.as_tensor(np.partition(array, k - 1)[k - 1])
    return torch.kthvalue(values, k).values


def smallest_k_mask(magnitudes: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of exactly ``k`` entries of a 1-D tensor with the smallest values.

    One selection (:func:`kth_smallest`) gives the threshold; ties at it are
    resolved towards the lowest indices.
    """
    if magnitudes.dim() != 1:
        raise ValueError(f"expected a 1-D tensor of magnitudes, got shape {tuple(magnitudes.shape)}")
    n = magnitudes.numel()
    if not 0 <= k <= n:
        raise ValueError(f"expected a count k in [0, {n}], got {k}")
    if k == 0:
        return torch.zeros(n, dtype=torch.bool, device=magnitudes.device)
    if k == n:
        return torch.ones(n, dtype=torch.bool, device=magnitudes.device)
    threshold = kth_smallest(magnitudes, k)
    mask = magnitudes <= threshold
    excess = int(torch.count_nonzero(mask)) - k
    if excess > 0:  # ties at the threshold: keep (un-prune) the last ``excess`` of them
        ties = torch.nonzero(magnitudes == threshold).squeeze(1)
        mask[ties[ties.numel() - excess:]] = False
    return mask


@register
class MagnitudePruning(WeightModification):
    """``pruning(P=...)``: zero the P % of weights with the smallest absolute values.

    ``scope="global"`` ranks all selected layers' weights together (as
    ``prune.global_unstructured``); ``scope="layer"`` prunes P % of each layer (as
    ``prune.l1_unstructured`` layer by layer).
    """

    family: ClassVar[str] = "pruning"
    defaults: ClassVar[dict[str, object]] = {"scope": "global"}

    def __init__(self, P: float, scope: str = "global",
                 layers: Sequence[str] | str | None = None) -> None:
        p = check_real("P", P, low=0.0, high=100.0, what="percentage of weights to prune")
        s = check_choice("scope", scope, SCOPES)
        super().__init__({"P": p, "scope": s}, layers=layers)

    @property
    def P(self) -> float:
        return self._params["P"]

    @property
    def scope(self) -> str:
        return self._params["scope"]

    def masks(self, layers: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Boolean masks (True = pruned) this Modification would apply to ``layers``."""
        weights = list(layers.values())
        if self.scope == "layer":
            return {
                name: smallest_k_mask(w.detach().reshape(-1).abs(), prune_count(self.P, w.numel())).view(w.shape)
                for name, w in layers.items()
            }
        flat = torch.cat([w.detach().reshape(-1) for w in weights]).abs_()
        mask = smallest_k_mask(flat, prune_count(self.P, flat.numel()))
        sizes = [w.numel() for w in weights]
        return {name: seg.view(w.shape) for (name, w), seg in zip(layers.items(), mask.split(sizes))}

    def modify_weights(self, layers: dict[str, nn.Parameter], *, seed: int) -> None:
        if self.P == 0.0:
            return
        for name, mask in self.masks(layers).items():
            layers[name].masked_fill_(mask, 0)


@register
class RandomPruning(WeightModification):
    """``random_pruning(P=...)``: zero P % of each selected layer's weights, uniformly at random.

    The ``round(P / 100 * n)`` positions of a layer are the first of a
    ``torch.randperm`` drawn from a CPU generator seeded from ``(seed, layer name)``.
    """

    family: ClassVar[str] = "random_pruning"

    def __init__(self, P: float, layers: Sequence[str] | str | None = None) -> None:
        p = check_real("P", P, low=0.0, high=100.0, what="percentage of weights to prune")
        super().__init__({"P": p}, layers=layers)

    @property
    def P(self) -> float:
        return self._params["P"]

    def masks(self, layers: dict[str, torch.Tensor], *, seed: int) -> dict[str, torch.Tensor]:
        """Boolean masks (True = pruned) for ``layers`` under ``seed``."""
        out: dict[str, torch.Tensor] = {}
        for name, w in layers.items():
            n = w.numel()
            k = prune_count(self.P, n)
            mask = torch.zeros(n, dtype=torch.bool)
            if k:
                mask[torch.randperm(n, generator=layer_generator(seed, name))[:k]] = True
            out[name] = mask.view(w.shape).to(w.device)
        return out

    def modify_weights(self, layers: dict[str, nn.Parameter], *, seed: int) -> None:
        if self.P == 0.0:
            return
        for name, mask in self.masks(layers, seed=seed).items():
            layers[name].masked_fill_(mask, 0)


__all__ = ["SCOPES", "MagnitudePruning", "RandomPruning", "kth_smallest", "prune_count", "smallest_k_mask"]
