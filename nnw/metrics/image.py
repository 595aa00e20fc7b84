"""Image-quality Performance for generative and up-sampling tasks (NNW-TEC §3 "Peak Signal-to-Noise
Ratio", "Structural Similarity Index Measure (SSIM)"; §6.1: pix2pix and RDN use PSNR and SSIM).

Shapes: ``(H, W)`` is one grey image, ``(C, H, W)`` one image, ``(B, C, H, W)`` a batch (channels
first, as torch models produce them). Values are on the ``0..max_value`` scale (255 by default,
matching the spec's C1 = 6.5025 = (0.01*255)^2 and C2 = 58.5225 = (0.03*255)^2).

Two SSIMs are provided and named apart:

* ``ssim_global`` — the spec's formula: one SSIM per image channel from means, population
  variances and the population covariance over the whole image. **The spec's tables use this.**
* ``ssim_windowed`` — the usual local SSIM of Wang et al. 2004 (Gaussian 11x11, sigma 1.5,
  population covariance), equal to ``skimage.metrics.structural_similarity(...,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["psnr", "ssim_global", "ssim_windowed"]

K1 = 0.01
K2 = 0.03


def _as_batch(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Both images as float64 (B, C, H, W) on x's device."""
    tx = torch.as_tensor(x).detach()
    ty = torch.as_tensor(y).detach()
    if tx.shape != ty.shape:
        raise ValueError(f"images must have equal shapes; received {tuple(tx.shape)} and {tuple(ty.shape)}")
    if tx.dim() == 2:
        tx, ty = tx[None, None], ty[None, None]
    elif tx.dim() == 3:
        tx, ty = tx[None], ty[None]
    elif tx.dim() != 4:
        raise ValueError(f"images must be (H, W), (C, H, W) or (B, C, H, W); received shape {tuple(tx.shape)}")
    if tx.numel() == 0:
        raise ValueError("images must not be empty")
    return tx.to(torch.float64), ty.to(device=tx.device, dtype=torch.float64)


def psnr(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, max_value: float = 255.0) -> float:
    """PSNR = 10 log10(max^2 / MSE) in dB (NNW-TEC §3).

    MSE is taken per image over all its pixels *and channels*; for a batch the per-image PSNRs
    are averaged (the mean of dB values, not the PSNR of the pooled MSE). Identical images give
    ``inf`` (and a batch containing one gives ``inf``).
    """
    if not max_value > 0:
        raise ValueError(f"max_value must be > 0; received {max_value!r}")
    tx, ty = _as_batch(x, y)
    mse = ((tx - ty) ** 2).flatten(1).mean(1)
    values = 10.0 * torch.log10(max_value**2 / mse)  # mse == 0 -> inf
    return float(values.mean().item())


def ssim_global(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray, data_range: float = 255.0) -> float:
    """The spec's global SSIM (NNW-TEC §3): one window covering the whole image.

    Per channel: mu = mean, sigma^2 = (1/(M*N)) sum (x - mu)^2, cov = (1/(M*N)) sum (x - mu_x)(y - mu_y),
    C1 = (0.01 * data_range)^2, C2 = (0.03 * data_range)^2 (6.5025 and 58.5225 at 255).
    Averaged over the channels of each image, then over the batch.
    """
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0; received {data_range!r}")
    tx, ty = _as_batch(x, y)
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    fx = tx.flatten(2)
    fy = ty.flatten(2)
    mx = fx.mean(-1)
    my = fy.mean(-1)
    dx = fx - mx.unsqueeze(-1)
    dy = fy - my.unsqueeze(-1)
    vx = (dx * dx).mean(-1)
    vy = (dy * dy).mean(-1)
    cov = (dx * dy).mean(-1)
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean(-1).mean().item())


def _gaussian_1d(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    """Normalised 1-D Gaussian taps (the 2-D window is their outer product, applied separably)."""
    half = (size - 1) / 2.0
    coords = torch.arange(size, dtype=torch.float64, device=device) - half
    g = torch.exp(-0.5 * (coords / sigma) ** 2)
    return g / g.sum()


def ssim_windowed(
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    data_range: float = 255.0,
    win_size: int = 11,
    sigma: float = 1.5,
) -> float:
    """Local (windowed) SSIM of Wang et al. 2004, in torch (runs on the inputs' device).

    Gaussian window ``win_size`` x ``win_size`` with std ``sigma`` (11, 1.5), population
    (co)variances, C1/C2 as in ``ssim_global``; the SSIM map is computed where the window fits
    inside the image (valid convolution, i.e. the ``(win_size - 1) / 2`` border that skimage crops)
    and averaged; per channel, then over channels, then over the batch. Matches skimage's
    ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``.
    Not the formula of the spec's tables (see ``ssim_global``).
    """
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0; received {data_range!r}")
    if isinstance(win_size, bool) or not isinstance(win_size, int) or win_size < 1 or win_size % 2 == 0:
        raise ValueError(f"win_size must be a positive odd int; received {win_size!r}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0; received {sigma!r}")
    tx, ty = _as_batch(x, y)
    b, c, h, w = tx.shape
    if h < win_size or w < win_size:
        raise ValueError(f"images must be at least {win_size}x{win_size} for windowed SSIM; received {h}x{w}")
    c1 = (K1 * data_range) ** 2
    c2 = (K2 * data_range) ** 2
    g = _gaussian_1d(win_size, sigma, tx.device)
    # five filtered maps at once: every (image, channel, statistic) is its own plane; separable
    # valid convolution (columns then rows), ~win_size/2 times cheaper than the 2-D kernel
    planes = torch.stack((tx, ty, tx * tx, ty * ty, tx * ty), dim=2).reshape(b * c * 5, 1, h, w)
    f = F.conv2d(F.conv2d(planes, g.view(1, 1, win_size, 1)), g.view(1, 1, 1, win_size)).reshape(b, c, 5, h - win_size + 1, w - win_size + 1)
    ux, uy, uxx, uyy, uxy = f.unbind(2)
    vx = uxx - ux * ux
    vy = uyy - uy * uy
    vxy = uxy - ux * uy
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return float(s.mean(dim=(-2, -1)).mean(-1).mean().item())
