"""Impact of watermarking and relative error of a Modification (NNW-TEC §7.2.5 eq. (1), §7.2.6 eq. (2);
same formulas in §7.3.4 eq. (3), §7.4.4–7.4.5 eq. (4))."""

from __future__ import annotations

import math

__all__ = ["LOWER_IS_BETTER", "impact", "relative_error", "relative_error_percent", "relative_loss"]

#: Table 1 measures where a smaller value is better (the classification error); PSNR, SSIM and
#: mIoU are higher-is-better.
LOWER_IS_BETTER = frozenset({"error"})


def _check(reference: float, other: float, names: tuple[str, str]) -> tuple[float, float]:
    ref, oth = float(reference), float(other)
    if not (math.isfinite(ref) and math.isfinite(oth)):
        raise ValueError(f"{names[0]} and {names[1]} must be finite; received {ref!r} and {oth!r}")
    if ref == 0.0:
        raise ValueError(f"{names[0]} (the reference Performance) must be non-zero to take a relative difference; received 0")
    return ref, oth


def impact(p_uwm: float, p_wm: float) -> float:
    """Impact = |P_uwm - P_wm| / P_uwm * 100, in percent (NNW-TEC eq. (1)).

    P is the task Performance (Top-1 accuracy, PSNR, SSIM or mIoU) of the unwatermarked (uwm)
    and watermarked (wm) NN. P_uwm == 0 -> ValueError.
    """
    ref, oth = _check(p_uwm, p_wm, ("p_uwm", "p_wm"))
    return abs(ref - oth) / abs(ref) * 100.0


def relative_error(p_m: float, p_unm: float) -> float:
    """error = |P_m - P_unm| / P_unm, a fraction (NNW-TEC eq. (2)); m = Modified, unm = un-Modified.

    P_unm == 0 -> ValueError.
    """
    ref, oth = _check(p_unm, p_m, ("p_unm", "p_m"))
    return abs(oth - ref) / abs(ref)


def relative_error_percent(p_m: float, p_unm: float) -> float:
    """``relative_error`` x 100, as the robustness tables print it."""
    return relative_error(p_m, p_unm) * 100.0


def relative_loss(measure: str, p_m: float, p_ref: float) -> float:
    """eq. (2) signed in the direction of worse: (P_ref − P_m) / P_ref for a higher-is-better
    measure, (P_m − P_ref) / P_ref for the classification error; negative when P_m is better."""
    ref, oth = _check(p_ref, p_m, ("p_ref", "p_m"))
    return ((oth - ref) if measure in LOWER_IS_BETTER else (ref - oth)) / abs(ref)
