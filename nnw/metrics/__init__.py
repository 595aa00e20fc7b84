"""Instruments of NNW-TEC V1.0: task Performance (§3, §6.1), Impact and relative error (eqs. 1–2),
Detection/Decoding statistics (§7.2.5, BER, SER) and detector error rates (IEEE 3304-2023)."""

from __future__ import annotations

from nnw.metrics.classification import classification_error, correct_topk, topk_accuracy
from nnw.metrics.detection import (
    CorrelationDetection,
    CorrelationResult,
    bit_error_rate,
    correlation_detection,
    pearson,
    rankdata,
    spearman,
    spearman_critical_value,
    symbol_error_rate,
)
from nnw.metrics.image import psnr, ssim_global, ssim_windowed
from nnw.metrics.impact import LOWER_IS_BETTER, impact, relative_error, relative_error_percent, relative_loss
from nnw.metrics.rates import Rate, clopper_pearson, false_alarm_rate, missed_detection_rate
from nnw.metrics.segmentation import confusion_matrix, mean_iou, mean_iou_from_confusion

__all__ = [
    "CorrelationDetection",
    "CorrelationResult",
    "Rate",
    "bit_error_rate",
    "classification_error",
    "clopper_pearson",
    "confusion_matrix",
    "correct_topk",
    "correlation_detection",
    "false_alarm_rate",
    "impact",
    "mean_iou",
    "mean_iou_from_confusion",
    "missed_detection_rate",
    "pearson",
    "psnr",
    "rankdata",
    "relative_error",
    "relative_loss",
    "LOWER_IS_BETTER",
    "relative_error_percent",
    "spearman",
    "spearman_critical_value",
    "ssim_global",
    "ssim_windowed",
    "symbol_error_rate",
    "topk_accuracy",
]
