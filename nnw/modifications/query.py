"""Query-time attacks on trigger-set (black-box) marks: beyond the standard (adversarial stress section).

The weights are left untouched; the attacker serves the model behind a front end that alters what
the verifier's queries see (Hitaj et al., "Evasion Attacks Against Watermarking Techniques found
in MLaaS Systems", SDS 2019; Lukas et al., "SoK: How Robust is Image Classification Deep Neural
Network Watermarking?", IEEE S&P 2022 — input smoothing / JPEG / shifts in their toolbox):

- ``query_jpeg(Q=...)``: every input goes through JPEG compression at quality Q (JFIF YCbCr,
  8×8 orthonormal DCT-II, the standard's quantization tables scaled by the IJG quality formula,
  no chroma subsampling; Wallace 1992) and decoding to uint8;
- ``query_blur(sigma=...)``: a Gaussian blur (separable, reflect padding);
- ``query_shift(px=...)``: a translation by ``px`` pixels in both axes (directions from the seed,
  edge pixels replicated);
- ``ood_refusal(FPR=...,score=...)``: an out-of-distribution detector calibrated on clean data
  (``n`` training inputs): the maximum softmax probability (Hendrycks & Gimpel, ICLR 2017) or the
  energy score logsumexp(logits) (Liu et al., NeurIPS 2020); queries scoring below the FPR-th
  percentile of the clean scores are refused — answered with the model's second choice.

They are forward (pre-)hooks on the model, so they travel with it (deep copies keep them) and every
query — the detector's and the accuracy evaluation's — goes through them. The pixel scale of the
model's input is read from the task's ``prepare`` (the ModificationContext must give the task).
"""
from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from nnw.modifications.base import (
    Modification,
    ModificationContext,
    check_choice,
    check_int,
    check_real,
    layer_generator,
    register,
)

#: JPEG (ITU-T T.81 Annex K) luminance and chrominance quantization tables.
_LUMA = torch.tensor([
    [16, 11, 10, 16, 24, 40, 51, 61], [12, 12, 14, 19, 26, 58, 60, 55], [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62], [18, 22, 37, 56, 68, 109, 103, 77], [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101], [72, 92, 95, 98, 112, 100, 103, 99]], dtype=torch.float64)
_CHROMA = torch.tensor([
    [17, 18, 24, 47, 99, 99, 99, 99], [18, 21, 26, 66, 99, 99, 99, 99], [24, 26, 56, 99, 99, 99, 99, 99],
    [47, 66, 99, 99, 99, 99, 99, 99]] + [[99] * 8] * 4, dtype=torch.float64)


def quality_table(table: torch.Tensor, quality: int) -> torch.Tensor:
    """IJG quality scaling of a quantization table (entries clamped to 1..255)."""
    scale = 5000.0 / quality if quality < 50 else 200.0 - 2.0 * quality
    return torch.clamp(torch.floor((table * scale + 50.0) / 100.0), 1, 255)


def _dct_matrix(n: int = 8) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float64)
    d = torch.cos(math.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d


def jpeg(pixels: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG-compress and decode NCHW images given as floats in [0, 255]; returns floats in [0, 255]."""
    x = pixels.double().clamp(0, 255)
    n, c, h, w = x.shape
    ph, pw = (-h) % 8, (-w) % 8
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    if c == 3:
        r, g, b = x[:, 0], x[:, 1], x[:, 2]
        x = torch.stack([0.299 * r + 0.587 * g + 0.114 * b,
                         128 - 0.168736 * r - 0.331264 * g + 0.5 * b,
                         128 + 0.5 * r - 0.418688 * g - 0.081312 * b], 1)
        tables = [quality_table(_LUMA, quality), quality_table(_CHROMA, quality), quality_table(_CHROMA, quality)]
    else:
        tables = [quality_table(_LUMA, quality)] * c
    q = torch.stack(tables).to(x.device)                    # (C, 8, 8)
    d = _dct_matrix().to(x.device)
    H, W = x.shape[2] // 8, x.shape[3] // 8
    blocks = (x - 128).view(n, c, H, 8, W, 8).permute(0, 1, 2, 4, 3, 5)   # n c H W 8 8
    coef = d @ blocks @ d.T
    qb = q[None, :, None, None]
    coef = torch.round(coef / qb) * qb
    x = (d.T @ coef @ d + 128).permute(0, 1, 2, 4, 3, 5).reshape(n, c, 8 * H, 8 * W)
    if c == 3:
        y, cb, cr = x[:, 0], x[:, 1] - 128, x[:, 2] - 128
        x = torch.stack([y + 1.402 * cr, y - 0.344136 * cb - 0.714136 * cr, y + 1.772 * cb], 1)
    return torch.round(x[:, :, :h, :w]).clamp(0, 255)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of NCHW ``x`` (radius ceil(3σ), reflect padding)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    radius = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(x)
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Translate NCHW ``x`` by (dy, dx) pixels, replicating the edge pixels."""
    p = max(abs(dy), abs(dx))
    if p == 0:
        return x
    h, w = x.shape[-2:]
    xp = F.pad(x, (p, p, p, p), mode="replicate")
    return xp[..., p - dy:p - dy + h, p - dx:p - dx + w]


def pixel_scale(task) -> tuple[float, float]:
    """(model input of pixel 0, model input of pixel 255) under ``task.prepare`` (an affine map)."""
    v = task.prepare(torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1)).double().flatten()
    return float(v[0]), float(v[-1])


class InputTransform:
    """A forward pre-hook applying a pixel-space transform to the model's (prepared) inputs."""

    def __init__(self, kind: str, lo: float, hi: float, **params: Any) -> None:
        self.kind, self.lo, self.hi, self.params = kind, lo, hi, params

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        pixels = (x.double() - self.lo) / (self.hi - self.lo) * 255.0
        if self.kind == "jpeg":
            pixels = jpeg(pixels, self.params["Q"])
        elif self.kind == "blur":
            pixels = gaussian_blur(pixels, self.params["sigma"])
        else:
            pixels = shift(pixels, self.params["dy"], self.params["dx"])
        return (pixels / 255.0 * (self.hi - self.lo) + self.lo).to(x.dtype)

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        return (self.transform(args[0]),) + tuple(args[1:])


class _QueryTransform(Modification):
    needs_training: ClassVar[bool] = False
    kind: ClassVar[str]

    def _hook_params(self, seed: int) -> dict[str, Any]:
        return dict(self._params)

    def _modify(self, model: nn.Module, *, seed: int, context: ModificationContext | None) -> None:
        if context is None or context.task is None:
            raise ValueError(f"{self.name}: needs the task (its input scale) in a ModificationContext")
        lo, hi = pixel_scale(context.task)
        model.register_forward_pre_hook(InputTransform(self.kind, lo, hi, **self._hook_params(seed)))


@register
class QueryJPEG(_QueryTransform):
    """``query_jpeg(Q=...)``: every query JPEG-compressed at quality Q (1..100) before the model."""

    family: ClassVar[str] = "query_jpeg"
    kind = "jpeg"

    def __init__(self, Q: int = 50) -> None:
        super().__init__({"Q": check_int("Q", Q, low=1, high=100, what="JPEG quality")})


@register
class QueryBlur(_QueryTransform):
    """``query_blur(sigma=...)``: every query blurred by a Gaussian of standard deviation sigma pixels."""

    family: ClassVar[str] = "query_blur"
    kind = "blur"

    def __init__(self, sigma: float = 1.0) -> None:
        super().__init__({"sigma": check_real("sigma", sigma, low=1e-3, high=100.0, what="blur std (pixels)")})


@register
class QueryShift(_QueryTransform):
    """``query_shift(px=...)``: every query translated by px pixels in both axes (signs from the seed)."""

    family: ClassVar[str] = "query_shift"
    kind = "shift"

    def __init__(self, px: int = 2) -> None:
        super().__init__({"px": check_int("px", px, low=0, high=64, what="shift in pixels")})

    def _hook_params(self, seed: int) -> dict[str, Any]:
        s = torch.randint(0, 2, (2,), generator=layer_generator(seed, "query_shift")) * 2 - 1
        return {"dy": int(s[0]) * self._params["px"], "dx": int(s[1]) * self._params["px"]}


def ood_scores(logits: torch.Tensor, score: str) -> torch.Tensor:
    """In-distribution scores (higher = more in-distribution): max softmax probability or
    logsumexp(logits) (the negative energy at temperature 1)."""
    logits = logits.double()
    if score == "msp":
        return torch.softmax(logits, dim=1).amax(dim=1)
    return torch.logsumexp(logits, dim=1)


class Refusal:
    """A forward hook answering queries scored below ``threshold`` with the model's second choice."""

    def __init__(self, score: str, threshold: float) -> None:
        self.score, self.threshold = score, threshold
        self.refused = 0
        self.queries = 0

    def __call__(self, module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(out) or out.dim() != 2 or out.shape[1] < 2:
            raise ValueError("ood_refusal applies to classifiers (outputs of shape (batch, classes))")
        flag = ood_scores(out.detach(), self.score) < self.threshold
        self.refused += int(flag.sum())
        self.queries += int(flag.numel())
        if not bool(flag.any()):
            return out
        out = out.clone()
        rows = torch.nonzero(flag).squeeze(1)
        top = out[rows].argmax(dim=1)
        out[rows, top] = out[rows].amin(dim=1) - 1.0
        return out


@register
class OODRefusal(Modification):
    """``ood_refusal(FPR=...,score=...)``: queries flagged out-of-distribution are refused (answered
    with the second choice); the threshold refuses FPR % of n clean calibration queries."""

    family: ClassVar[str] = "ood_refusal"
    needs_training: ClassVar[bool] = False
    defaults = {"score": "msp", "n": 1000}

    def __init__(self, FPR: float = 5.0, score: str = "msp", n: int = 1000) -> None:
        super().__init__({"FPR": check_real("FPR", FPR, low=0.0, high=100.0, what="clean queries refused (%)"),
                          "score": check_choice("score", score, ("msp", "energy")),
                          "n": check_int("n", n, low=1, high=10**7, what="clean calibration queries")})

    def threshold(self, model: nn.Module, task) -> float:
        """The FPR-th percentile of the in-distribution scores of the clean calibration queries."""
        logits = task.predict(model, task.train.x[: self._params["n"]])
        scores = ood_scores(logits, self._params["score"]).cpu()
        return float(torch.quantile(scores, self._params["FPR"] / 100.0))

    def _modify(self, model: nn.Module, *, seed: int, context: ModificationContext | None) -> None:
        if context is None or context.task is None:
            raise ValueError(f"{self.name}: needs the task (clean calibration data) in a ModificationContext")
        if self._params["FPR"] == 0.0:
            return
        model.register_forward_hook(Refusal(self._params["score"], self.threshold(model, context.task)))


__all__ = ["InputTransform", "OODRefusal", "QueryBlur", "QueryJPEG", "QueryShift", "Refusal", "gaussian_blur",
           "jpeg", "ood_scores", "pixel_scale", "quality_table", "shift"]
