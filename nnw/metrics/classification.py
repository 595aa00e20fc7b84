"""Classification performance: Top-k accuracy and classification error (NNW-TEC §3 "Top-k
accuracy", §6.1: VGG16/ResNet8 on CIFAR-10 use "Classification error being 1 - Top-1 Accuracy")."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["classification_error", "correct_topk", "topk_accuracy"]


def _check(logits: torch.Tensor, targets: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    lg = torch.as_tensor(logits).detach()
    tg = torch.as_tensor(targets).detach()
    if lg.dim() != 2:
        raise ValueError(f"logits must have shape (batch, classes); received {tuple(lg.shape)}")
    if tg.dim() != 1 or tg.shape[0] != lg.shape[0]:
        raise ValueError(f"targets must have shape ({lg.shape[0]},); received {tuple(tg.shape)}")
    if tg.dtype.is_floating_point or tg.dtype == torch.bool:
        raise ValueError(f"targets must be integer class indices; received dtype {tg.dtype}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= lg.shape[1]:
        raise ValueError(f"k must be an int in [1, {lg.shape[1]}]; received {k!r}")
    return lg, tg.to(lg.device)


def correct_topk(logits: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray, k: int = 1) -> int:
    """Number of samples whose target is among the k highest logits (count form, for batch accumulation).

    Ties at the k-th score are broken by ``torch.topk``'s order.
    """
    lg, tg = _check(logits, targets, k)
    if lg.shape[0] == 0:
        return 0
    top = lg.topk(k, dim=1).indices
    return int((top == tg.unsqueeze(1)).any(dim=1).sum().item())


def topk_accuracy(logits: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray, k: int = 1) -> float:
    """Top-k accuracy: share of samples whose target is among the top k predictions (NNW-TEC §3)."""
    lg, _ = _check(logits, targets, k)
    if lg.shape[0] == 0:
        raise ValueError("Top-k accuracy needs at least one sample; received an empty batch")
    return correct_topk(logits, targets, k) / lg.shape[0]


def classification_error(logits: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray) -> float:
    """Classification error = 1 - Top-1 accuracy (NNW-TEC §6.1)."""
    return 1.0 - topk_accuracy(logits, targets, 1)
