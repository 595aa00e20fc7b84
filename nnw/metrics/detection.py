"""Detection and Decoding statistics: correlation detector, BER, SER.

NNW-TEC V1.0 §7.2.5 decides whether an NCT mark is present "at 5% significance level based on
the Spearman correlation" (§3 "Rho Spearman Value") while its tables print a correlation
coefficient. Following spec README defects 2–3 we *decide* with Spearman's rho and its p-value,
*report* Pearson too, and compute the critical value from the number of correlated values ``n``
instead of hard-coding Figure 4's 0.018.

p-values use the usual t approximation (as ``scipy.stats.spearmanr``):
``t = r * sqrt((n - 2) / (1 - r^2))`` with ``n - 2`` degrees of freedom. For Pearson's r this is
exact under bivariate-normal H0 (it equals ``scipy.stats.pearsonr``'s beta-distribution p-value).
Critical values invert it: ``r_c = t_c / sqrt(n - 2 + t_c^2)``.

Distribution functions are ``scipy.special.stdtr`` / ``stdtrit`` (Student t CDF and its
inverse, the kernels behind ``scipy.stats.t``) to avoid per-call overhead of the frozen
distribution objects. Ranks use one sort (O(n log n), §7.2.7) on CPU or GPU.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import torch
from scipy import special

Alternative = Literal["two-sided", "greater"]
_ALTERNATIVES = ("two-sided", "greater")

__all__ = [
    "Alternative",
    "CorrelationDetection",
    "CorrelationResult",
    "bit_error_rate",
    "correlation_detection",
    "pearson",
    "rankdata",
    "spearman",
    "spearman_critical_value",
    "symbol_error_rate",
]


@dataclass(frozen=True)
class CorrelationResult:
    """A correlation coefficient, its p-value (under the stated alternative) and sample size."""

    rho: float
    p_value: float
    n: int


@dataclass(frozen=True)
class CorrelationDetection:
    """Outcome of the NCT correlation detector (NNW-TEC §7.2.5, Detection in §3).

    ``present`` is decided by Spearman (``p_value < alpha``); ``pearson`` is reported alongside
    because the spec's tables print a "Pearson correlation (corr)" (spec README defect 2).
    """

    present: bool
    rho: float
    p_value: float
    critical_value: float
    pearson: float
    n: int
    alternative: str


def _as_float64_pair(x: object, y: object) -> tuple[torch.Tensor | np.ndarray, torch.Tensor | np.ndarray]:
    """Flatten to float64; CPU data becomes numpy (faster, predictable kernels), CUDA stays torch."""
    tx = torch.as_tensor(x).detach()
    ty = torch.as_tensor(y).detach()
    if tx.shape != ty.shape:
        raise ValueError(f"correlation needs equal shapes; received {tuple(tx.shape)} and {tuple(ty.shape)}")
    n = tx.numel()
    if n < 3:
        raise ValueError(f"correlation needs at least 3 paired values (n - 2 >= 1 degrees of freedom); received n={n}")
    if tx.device.type == "cpu" and ty.device.type == "cpu":
        ax = tx.reshape(-1).to(torch.float64).numpy()
        ay = ty.reshape(-1).to(torch.float64).numpy()
        if not (np.isfinite(ax).all() and np.isfinite(ay).all()):
            raise ValueError("correlation needs finite values; received NaN or inf")
        return ax, ay
    tx = tx.reshape(-1).to(torch.float64)
    ty = ty.reshape(-1).to(device=tx.device, dtype=torch.float64)
    if not bool(torch.isfinite(torch.stack((tx, ty))).all()):
        raise ValueError("correlation needs finite values; received NaN or inf")
    return tx, ty


def _check_alternative(alternative: str) -> None:
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative must be one of {_ALTERNATIVES}; received {alternative!r}")


def _order_float32(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(argsort, sorted order-preserving integer keys) of float32 values via one int64 sort.

    Each value's bits become an int32 that orders like the float (negative floats get their
    magnitude bits flipped; -0.0 is folded onto +0.0 first), shifted into the high half of an int64
    whose low half is the position; sorting those (numpy's SIMD sort) is ~2x faster than an
    argsort. Ties keep position order (stable)."""
    u = (f + np.float32(0.0)).view(np.int32)
    packed = (u ^ ((u >> 31) & 0x7FFFFFFF)).astype(np.int64)
    packed <<= 32
    packed |= _positions(f.size)
    packed.sort()
    return packed & 0xFFFFFFFF, packed >> 32


@functools.lru_cache(maxsize=8)
def _positions(n: int) -> np.ndarray:
    out = np.arange(n, dtype=np.int64)
    out.flags.writeable = False
    return out


def _rank_numpy(a: np.ndarray) -> np.ndarray:
    return _rank_numpy_tied(a)[0]


def _rank_numpy_tied(a: np.ndarray) -> tuple[np.ndarray, bool]:
    """(average ranks, whether ``a`` holds no tie)."""
    n = a.size
    f = a.astype(np.float32) if a.dtype == np.float64 else a
    if f.dtype == np.float32 and n < 2**32 and (f is a or np.array_equal(f, a)):
        order, sorted_keys = _order_float32(f)  # float32 values (e.g. weights): exact, faster
    else:
        order = np.argsort(a)  # introsort; ties need no stability since they share one rank
        sorted_keys = a[order]
    new_group = np.empty(n, dtype=bool)
    new_group[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=new_group[1:])
    ranks = np.empty(n, dtype=np.float64)
    if new_group.all():  # no ties: the rank is the sorted position
        ranks[order] = _positions(n) + 1.0
        return ranks, True
    group = np.cumsum(new_group) - 1
    counts = np.bincount(group).astype(np.float64)
    starts = np.cumsum(counts) - counts  # 0-based position of each tie group's first element
    ranks[order] = (starts + (counts + 1.0) / 2.0)[group]
    return ranks, False


def _rank_torch(t: torch.Tensor) -> torch.Tensor:
    n = t.numel()
    sorted_vals, order = torch.sort(t)
    new_group = torch.ones(n, dtype=torch.bool, device=t.device)
    new_group[1:] = sorted_vals[1:] != sorted_vals[:-1]
    group = torch.cumsum(new_group, 0) - 1
    counts = torch.bincount(group).to(torch.float64)
    starts = torch.cumsum(counts, 0) - counts
    ranks = torch.empty(n, dtype=torch.float64, device=t.device)
    ranks[order] = (starts + (counts + 1.0) / 2.0)[group]
    return ranks


def rankdata(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Average ranks (1-based, ties share their mean rank) of the flattened input, as ``scipy.stats.rankdata``.

    One sort plus linear scans, O(n log n) (NNW-TEC §7.2.7). CPU input is ranked with numpy
    (torch's CPU sort and indexing kernels are several times slower), other devices with torch;
    the result is a float64 tensor on the input's device.
    """
    t = torch.as_tensor(x).detach().reshape(-1)
    if t.numel() == 0:
        return torch.empty(0, dtype=torch.float64, device=t.device)
    if t.device.type == "cpu":
        return torch.from_numpy(_rank_numpy(t.numpy() if t.dtype != torch.bool else t.to(torch.uint8).numpy()))
    return _rank_torch(t)


def _ranks(a: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    return _rank_numpy(a) if isinstance(a, np.ndarray) else _rank_torch(a)


def _pearson_r(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> float:
    """Pearson's r of two float64 vectors; 0.0 when either is constant (no linear association)."""
    if _is_constant(x) or _is_constant(y):
        return 0.0
    xc = x - x.mean()
    yc = y - y.mean()
    # elementwise products + sum rather than a BLAS dot: BLAS threading costs ms on a busy CPU
    if isinstance(xc, np.ndarray):
        sxy, sxx, syy = float((xc * yc).sum()), float((xc * xc).sum()), float((yc * yc).sum())
    else:
        sxy, sxx, syy = torch.stack(((xc * yc).sum(), (xc * xc).sum(), (yc * yc).sum())).tolist()
    r = sxy / math.sqrt(sxx * syy)
    return max(-1.0, min(1.0, r))


def _is_constant(a: torch.Tensor | np.ndarray) -> bool:
    return bool((a == a[0]).all())


def _p_value(r: float, n: int, alternative: str) -> float:
    """p-value of r under H0 (no association) by the t approximation with n - 2 degrees of freedom."""
    dof = n - 2
    if r >= 1.0:
        t = math.inf
    elif r <= -1.0:
        t = -math.inf
    else:
        t = r * math.sqrt(dof / ((1.0 + r) * (1.0 - r)))
    if alternative == "greater":
        return float(special.stdtr(dof, -t))  # P(T >= t)
    return float(min(1.0, 2.0 * special.stdtr(dof, -abs(t))))


def _correlation(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, alternative: str) -> CorrelationResult:
    n = int(x.shape[0])
    if _is_constant(x) or _is_constant(y):
        return CorrelationResult(rho=0.0, p_value=1.0, n=n)
    r = _pearson_r(x, y)  # of the ranks for Spearman
    return CorrelationResult(rho=r, p_value=_p_value(r, n, alternative), n=n)


def _rank_correlation(rx, ry, alternative: str, tie_free: bool = False) -> CorrelationResult:
    """Pearson's r of two rank vectors. Without ties (both are permutations of 1..n) it is the
    closed form rho = 1 - 6 Σd² / (n(n² - 1)): the same number in one pass instead of three."""
    if not tie_free:
        return _correlation(rx, ry, alternative)
    n = int(rx.shape[0])
    d = rx - ry
    d *= d  # (elementwise, not a BLAS dot: BLAS threading costs ms on a busy CPU)
    r = max(-1.0, min(1.0, 1.0 - 6.0 * float(d.sum()) / (n * (n * n - 1.0))))
    return CorrelationResult(rho=r, p_value=_p_value(r, n, alternative), n=n)


def spearman(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, alternative: Alternative = "two-sided") -> CorrelationResult:
    """Spearman's rank correlation and its p-value (NNW-TEC §3 "Rho Spearman Value", §7.2.5).

    rho is Pearson's r of the average ranks (ties handled as ``scipy.stats.rankdata``); the
    p-value is the t approximation of ``scipy.stats.spearmanr`` (two-sided by default).
    Constant input: rho = 0, p = 1 (scipy returns NaN there; no evidence of association is the
    useful reading for a detector). n < 3 or non-finite values raise ValueError.
    """
    _check_alternative(alternative)
    tx, ty = _as_float64_pair(x, y)
    return _correlation(_ranks(tx), _ranks(ty), alternative)


def pearson(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, alternative: Alternative = "two-sided") -> CorrelationResult:
    """Pearson's correlation and its p-value (the "corr" printed by NNW-TEC Tables 2–11).

    The t-based p-value equals ``scipy.stats.pearsonr``'s exact beta p-value. Constant input:
    rho = 0, p = 1. n < 3 or non-finite values raise ValueError.
    """
    _check_alternative(alternative)
    tx, ty = _as_float64_pair(x, y)
    return _correlation(tx, ty, alternative)


@lru_cache(maxsize=1024)
def spearman_critical_value(n: int, alpha: float = 0.05, alternative: Alternative = "two-sided") -> float:
    """Critical Spearman rho at significance ``alpha`` for ``n`` paired values (spec README defect 3).

    ``r_c = t_c / sqrt(n - 2 + t_c^2)`` with ``t_c`` the upper ``1 - alpha`` (``"greater"``) or
    ``1 - alpha/2`` (``"two-sided"``) quantile of Student's t with n - 2 degrees of freedom.
    For n = 512, two-sided 5%: about 0.087. H0 is rejected iff rho > r_c (|rho| > r_c two-sided).
    """
    _check_alternative(alternative)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 3:
        raise ValueError(f"n must be an integer >= 3; received {n!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1); received {alpha!r}")
    q = 1.0 - alpha / 2.0 if alternative == "two-sided" else 1.0 - alpha
    dof = int(n) - 2
    t_c = float(special.stdtrit(dof, q))
    return t_c / math.sqrt(dof + t_c * t_c)


def correlation_detection(
    original: torch.Tensor | np.ndarray,
    extracted: torch.Tensor | np.ndarray,
    alpha: float = 0.05,
    alternative: Alternative = "greater",
) -> CorrelationDetection:
    """NCT Detection: is ``extracted`` correlated with the ``original`` mark? (NNW-TEC §7.2.5)

    Decision: Spearman's rho with ``present = p_value < alpha``, equivalent to
    ``rho > critical_value`` (``|rho| > critical_value`` for two-sided). Pearson's r is reported.

    Default ``alternative="greater"``: a mark that survives shows up as a *positive* association
    between inserted and extracted values; a negative correlation is not the mark (it would mean
    the values were inverted, not carried), so a one-sided test has the right null and more power.
    ``"two-sided"`` is kept for comparison with the spec's wording; there a strongly negative rho
    also counts as present. Constant input gives rho = 0, p = 1, present = False.
    """
    _check_alternative(alternative)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1); received {alpha!r}")
    tx, ty = _as_float64_pair(original, extracted)
    n = int(tx.shape[0])
    if isinstance(tx, np.ndarray):
        (rx, fx), (ry, fy) = _rank_numpy_tied(tx), _rank_numpy_tied(ty)
        s = _rank_correlation(rx, ry, alternative, tie_free=fx and fy)
    else:
        s = _correlation(_rank_torch(tx), _rank_torch(ty), alternative)
    return CorrelationDetection(
        present=bool(s.p_value < alpha),
        rho=s.rho,
        p_value=s.p_value,
        critical_value=spearman_critical_value(n, alpha, alternative),
        pearson=_pearson_r(tx, ty),
        n=n,
        alternative=alternative,
    )


def _binary(t: torch.Tensor, name: str) -> torch.Tensor:
    if t.dtype == torch.bool:
        return t
    if not bool(((t == 0) | (t == 1)).all()):
        raise ValueError(f"{name} must hold bits (0/1 or bool); received other values")
    return t != 0


def bit_error_rate(decoded: torch.Tensor | np.ndarray, expected: torch.Tensor | np.ndarray) -> float:
    """Bit Error Rate: errored bits / total payload bits (NNW-TEC §3 "Bit Error Rate").

    Both inputs hold bits (0/1 or bool) and must have the same shape; any shape is accepted and
    all bits count (a batch of payloads gives the overall BER).
    """
    d, e = _paired(decoded, expected, "BER", "bit")
    db = _binary(d, "decoded")
    eb = _binary(e, "expected").to(db.device)
    return float((db != eb).sum().item()) / d.numel()


def _paired(decoded, expected, rate: str, unit: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The two inputs of an error rate as tensors of one shape, at least one element."""
    d = torch.as_tensor(decoded).detach()
    e = torch.as_tensor(expected).detach()
    if d.shape != e.shape:
        raise ValueError(f"{rate} needs equal shapes; received decoded {tuple(d.shape)} and expected {tuple(e.shape)}")
    if d.numel() == 0:
        raise ValueError(f"{rate} needs at least one {unit}; received empty tensors")
    return d, e


def symbol_error_rate(decoded_symbols: torch.Tensor | np.ndarray, expected_symbols: torch.Tensor | np.ndarray) -> float:
    """Symbol Error Rate: errored symbols / total symbols (IEEE 3304-2023 robustness metrics).

    Symbols are compared for equality (see ``nnw.payload.to_symbols`` to group bits). Same shape
    required.
    """
    d, e = _paired(decoded_symbols, expected_symbols, "SER", "symbol")
    return float((d != e.to(d.device)).sum().item()) / d.numel()
