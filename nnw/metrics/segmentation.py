"""Semantic-segmentation Performance: mean Intersection over Union (NNW-TEC §3 "mean Intersection
over Union"; §6.1: DeepLabV3 on Cityscapes uses mIoU)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["confusion_matrix", "mean_iou", "mean_iou_from_confusion"]


def confusion_matrix(
    pred: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray,
    num_classes: int,
    ignore_index: int | None = 255,
) -> torch.Tensor:
    """``(num_classes, num_classes)`` int64 matrix, rows = target class, columns = predicted class.

    Pixels whose target equals ``ignore_index`` are skipped. Labels (after that) must lie in
    ``[0, num_classes)``; otherwise ValueError. Sum matrices over batches to accumulate.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int; received {num_classes!r}")
    p = torch.as_tensor(pred).detach()
    t = torch.as_tensor(target).detach()
    if p.shape != t.shape:
        raise ValueError(f"pred and target must have equal shapes; received {tuple(p.shape)} and {tuple(t.shape)}")
    if p.dtype.is_floating_point or t.dtype.is_floating_point:
        raise ValueError(f"pred and target must be integer label maps; received {p.dtype} and {t.dtype}")
    p = p.reshape(-1).to(torch.int64)
    t = t.reshape(-1).to(device=p.device, dtype=torch.int64)
    if ignore_index is not None:
        keep = t != ignore_index
        p, t = p[keep], t[keep]
    if p.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError(f"target labels must lie in [0, {num_classes}) or equal ignore_index={ignore_index}; received range [{int(t.min())}, {int(t.max())}]")
    if p.numel() and (int(p.min()) < 0 or int(p.max()) >= num_classes):
        raise ValueError(f"predicted labels must lie in [0, {num_classes}); received range [{int(p.min())}, {int(p.max())}]")
    return torch.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def mean_iou_from_confusion(cm: torch.Tensor | np.ndarray) -> float:
    """Unweighted mean over classes of IoU = TP / (TP + FP + FN) from a confusion matrix.

    A class absent from both prediction and target (TP + FP + FN = 0) has no IoU and is
    *excluded* from the mean. All classes absent -> ValueError.
    """
    m = torch.as_tensor(cm).detach().to(torch.float64)
    if m.dim() != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"confusion matrix must be square; received shape {tuple(m.shape)}")
    tp = m.diagonal()
    union = m.sum(0) + m.sum(1) - tp
    present = union > 0
    if not bool(present.any()):
        raise ValueError("mIoU is undefined: no pixel was counted (empty or all ignored)")
    return float((tp[present] / union[present]).mean().item())


def mean_iou(
    pred: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray,
    num_classes: int,
    ignore_index: int | None = 255,
) -> float:
    """mIoU of a label map (or batch of them): IoU per class, averaged over classes present in
    prediction or target (NNW-TEC §3)."""
    return mean_iou_from_confusion(confusion_matrix(pred, target, num_classes, ignore_index))
