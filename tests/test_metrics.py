"""Cross-checks of nnw.metrics against independent implementations (scipy, scikit-image) and
hand arithmetic."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as st
import skimage.data
import skimage.metrics
import torch
from hypothesis import given, settings
from hypothesis import strategies as hs

from nnw.metrics import (
    Rate,
    bit_error_rate,
    classification_error,
    clopper_pearson,
    confusion_matrix,
    correct_topk,
    correlation_detection,
    false_alarm_rate,
    impact,
    mean_iou,
    mean_iou_from_confusion,
    missed_detection_rate,
    pearson,
    psnr,
    rankdata,
    relative_error,
    relative_error_percent,
    spearman,
    spearman_critical_value,
    ssim_global,
    ssim_windowed,
    symbol_error_rate,
    topk_accuracy,
)
from nnw.metrics.detection import _rank_torch

# ---------------------------------------------------------------- correlation (NNW-TEC §7.2.5)


@hs.composite
def paired_samples(draw: hs.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Paired float64 samples; with ``levels`` small, many ties; with ``mix`` > 0, correlated."""
    n = draw(hs.integers(3, 300))
    seed = draw(hs.integers(0, 2**32 - 1))
    levels = draw(hs.sampled_from([2, 3, 5, 20, 0]))  # 0 = continuous values
    mix = draw(hs.sampled_from([0.0, 0.3, 0.9, 1.0, -0.7]))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = mix * x + math.sqrt(max(0.0, 1 - mix * mix)) * rng.normal(size=n)
    if levels:
        x = np.floor(x * levels)
        y = np.floor(y * levels)
    return x, y


def _constant(a: np.ndarray) -> bool:
    return bool(np.all(a == a[0]))


def _p_tolerance(r: float) -> dict[str, float]:
    """At |r| ~ 1 the p-value is a steep function of r's last bits (scipy's r = 1 - 2e-16 on
    identical inputs gives p ~ 1e-8 at n = 3, the exact r = 1 gives 0); compare loosely there."""
    return {"rel": 1e-6, "abs": 1e-6 if abs(r) > 1 - 1e-9 else 1e-12}


@settings(deadline=None, max_examples=50)
@given(paired_samples())
def test_spearman_matches_scipy(sample: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = sample
    ours = spearman(torch.from_numpy(x), torch.from_numpy(y))
    assert ours.n == len(x)
    if _constant(x) or _constant(y):
        assert (ours.rho, ours.p_value) == (0.0, 1.0)
        return
    ref = st.spearmanr(x, y)
    assert ours.rho == pytest.approx(ref.statistic, abs=1e-12)
    assert ours.p_value == pytest.approx(ref.pvalue, **_p_tolerance(ref.statistic))
    greater = spearman(x, y, alternative="greater")
    ref_g = st.spearmanr(x, y, alternative="greater")
    assert greater.p_value == pytest.approx(ref_g.pvalue, **_p_tolerance(ref.statistic))


@settings(deadline=None, max_examples=50)
@given(paired_samples())
def test_pearson_matches_scipy(sample: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = sample
    if _constant(x) or _constant(y):
        assert pearson(x, y).p_value == 1.0
        return
    ours = pearson(x, y)
    ref = st.pearsonr(x, y)
    assert ours.rho == pytest.approx(ref.statistic, abs=1e-12)
    # scipy uses the exact beta distribution of r; the t form is the same distribution
    assert ours.p_value == pytest.approx(ref.pvalue, **_p_tolerance(ref.statistic))


@settings(deadline=None, max_examples=50)
@given(paired_samples())
def test_rankdata_matches_scipy_on_both_code_paths(sample: tuple[np.ndarray, np.ndarray]) -> None:
    x, _ = sample
    ref = st.rankdata(x)
    np.testing.assert_array_equal(rankdata(torch.from_numpy(x)).numpy(), ref)
    # the torch path is what CUDA tensors take; exercise it on CPU too
    np.testing.assert_array_equal(_rank_torch(torch.from_numpy(x)).numpy(), ref)


@settings(deadline=None, max_examples=100)
@given(hs.lists(hs.sampled_from([0.0, -0.0, 1.5, -1.5, 3.4e38, -3.4e38, 1e-45, -1e-45, 2.0, -7.25])
                  | hs.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=60))
def test_rankdata_of_float32_values_matches_scipy(values: list[float]) -> None:
    """float32 data (weights) take the packed-sort path: ties, -0.0 == +0.0, extremes, subnormals."""
    x32 = np.asarray(values, dtype=np.float32)
    ref = st.rankdata(x32.astype(np.float64))
    np.testing.assert_array_equal(rankdata(torch.from_numpy(x32)).numpy(), ref)
    np.testing.assert_array_equal(rankdata(torch.from_numpy(x32.astype(np.float64))).numpy(), ref)


def test_spearman_hand_example_with_ties() -> None:
    # x ranks: 1, 2.5, 2.5, 4 ; y ranks: 1, 2, 3, 4
    # centred: (-1.5, 0, 0, 1.5) and (-1.5, -.5, .5, 1.5): sxy = 4.5, sxx = 4.5, syy = 5
    x = torch.tensor([1.0, 2.0, 2.0, 3.0])
    y = torch.tensor([10.0, 20.0, 30.0, 40.0])
    assert rankdata(x).tolist() == [1.0, 2.5, 2.5, 4.0]
    assert spearman(x, y).rho == pytest.approx(4.5 / math.sqrt(4.5 * 5))


def test_perfect_and_inverse_monotone_relations() -> None:
    x = torch.arange(50, dtype=torch.float32)
    up = spearman(x, x**3)
    assert up.rho == 1.0 and up.p_value == 0.0
    down = correlation_detection(x, -x)
    assert down.rho == -1.0 and not down.present and down.p_value == 1.0
    assert correlation_detection(x, -x, alternative="two-sided").present


def test_constant_input_is_no_detection() -> None:
    d = correlation_detection(torch.ones(100), torch.randn(100))
    assert (d.present, d.rho, d.p_value, d.pearson) == (False, 0.0, 1.0, 0.0)


@pytest.mark.parametrize(
    ("x", "y"),
    [([1.0, 2.0], [1.0, 2.0]), ([1.0, 2.0, 3.0], [1.0, 2.0]), ([1.0, float("nan"), 3.0], [1.0, 2.0, 3.0])],
)
def test_correlation_rejects_bad_input(x: list[float], y: list[float]) -> None:
    with pytest.raises(ValueError):
        spearman(torch.tensor(x), torch.tensor(y))


def test_correlation_rejects_unknown_alternative() -> None:
    with pytest.raises(ValueError, match="alternative"):
        correlation_detection(torch.randn(10), torch.randn(10), alternative="less")


def test_critical_value_spec_readme_figure() -> None:
    # spec README defect 3: n = 512, two-sided 5% -> about 0.087
    assert spearman_critical_value(512, 0.05, "two-sided") == pytest.approx(0.087, abs=5e-4)
    # closed form by hand for n = 64, one-sided: t_{0.95, 62} from scipy's t, r = t / sqrt(62 + t^2)
    t = st.t.ppf(0.95, 62)
    assert spearman_critical_value(64, 0.05, "greater") == pytest.approx(t / math.sqrt(62 + t * t), rel=1e-12)


def test_critical_value_agrees_with_permutation_null() -> None:
    """95th percentile of rho under H0 (20k random permutations, n = 64) vs the t-inverted value."""
    n, trials = 64, 20_000
    rng = np.random.default_rng(1234)
    perms = rng.permuted(np.tile(np.arange(n), (trials, 1)), axis=1)
    d2 = ((perms - np.arange(n)) ** 2).sum(axis=1)
    rho = 1.0 - 6.0 * d2 / (n * (n * n - 1))  # no ties: Spearman's closed form
    # SE of an empirical 95% quantile here is about 0.002
    assert np.quantile(rho, 0.95) == pytest.approx(spearman_critical_value(n, 0.05, "greater"), abs=0.01)
    assert np.quantile(np.abs(rho), 0.95) == pytest.approx(spearman_critical_value(n, 0.05, "two-sided"), abs=0.01)


def test_detection_decision_is_p_value_and_critical_value() -> None:
    rng = np.random.default_rng(7)
    for mix in (0.0, 0.05, 0.1, 0.2, 0.5):
        x = rng.normal(size=512)
        y = mix * x + rng.normal(size=512)
        d = correlation_detection(x, y)
        assert d.n == 512 and d.alternative == "greater"
        assert d.present == (d.p_value < 0.05) == (d.rho > d.critical_value)
        assert d.pearson == pytest.approx(st.pearsonr(x, y).statistic, abs=1e-12)
    marked = torch.randn(16144)
    d = correlation_detection(marked, marked + 0.5 * torch.randn(16144))
    assert d.present and d.rho > 0.8


# ---------------------------------------------------------------- BER / SER


def test_bit_error_rate_hand_example() -> None:
    assert bit_error_rate(torch.tensor([1, 0, 1, 1]), torch.tensor([1, 1, 1, 0])) == 0.5
    assert bit_error_rate(np.array([True, False]), np.array([1.0, 0.0])) == 0.0
    assert bit_error_rate(torch.zeros(2, 8), torch.ones(2, 8)) == 1.0


@pytest.mark.parametrize(
    ("decoded", "expected"),
    [([1, 0, 1], [1, 0]), ([0.5, 1.0], [1.0, 1.0]), ([], [])],
)
def test_bit_error_rate_rejects(decoded: list[float], expected: list[float]) -> None:
    with pytest.raises(ValueError):
        bit_error_rate(torch.tensor(decoded), torch.tensor(expected))


def test_symbol_error_rate_hand_example() -> None:
    assert symbol_error_rate(torch.tensor([3, 200, 7, 7]), torch.tensor([3, 201, 7, 0])) == 0.5
    with pytest.raises(ValueError):
        symbol_error_rate(torch.tensor([1, 2]), torch.tensor([1, 2, 3]))


# ---------------------------------------------------------------- classification (§3, §6.1)


def test_topk_accuracy_hand_example() -> None:
    logits = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.6, 0.1, 0.3]])
    targets = torch.tensor([1, 1, 0, 2])
    # top-1 predictions 1, 0, 2, 0 -> one hit; top-2: {1,2} {0,1} {2,1} {0,2} -> hits for 0, 1, 3
    assert correct_topk(logits, targets, 1) == 1
    assert topk_accuracy(logits, targets, 1) == 0.25
    assert classification_error(logits, targets) == 0.75
    assert topk_accuracy(logits, targets, 2) == 0.75
    assert topk_accuracy(logits, targets, 3) == 1.0


def test_topk_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        topk_accuracy(torch.zeros(4, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError):
        topk_accuracy(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), k=4)
    with pytest.raises(ValueError):
        topk_accuracy(torch.zeros(4, 3), torch.zeros(4))


# ---------------------------------------------------------------- image metrics (§3)


def test_psnr_by_hand() -> None:
    x = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    y = torch.tensor([[0.0, 2.0], [0.0, 0.0]])
    # MSE = 4 / 4 = 1 -> PSNR = 10 log10(255^2 / 1)
    assert psnr(x, y) == pytest.approx(10 * math.log10(255.0**2))
    assert psnr(x, x) == math.inf
    # batch: image 1 MSE = 1, image 2 MSE = 16/4 = 4 (one pixel off by 4) -> mean of the two dB values
    xb = torch.zeros(2, 1, 2, 2)
    yb = xb.clone()
    yb[0, 0, 0, 1] = 2.0
    yb[1, 0, 1, 1] = 4.0
    expected = (10 * math.log10(255.0**2 / 1) + 10 * math.log10(255.0**2 / 4)) / 2
    assert psnr(xb, yb) == pytest.approx(expected)


def test_ssim_global_by_hand() -> None:
    x = torch.tensor([[0.0, 0.0], [255.0, 255.0]])
    y = torch.tensor([[0.0, 255.0], [0.0, 255.0]])
    # mu_x = mu_y = 127.5; var_x = var_y = 127.5^2 = 16256.25; cov = (1/4)(127.5^2)(+1 -1 -1 +1) = 0
    mu, var, c1, c2 = 127.5, 16256.25, 6.5025, 58.5225
    expected = ((2 * mu * mu + c1) * (0 + c2)) / ((2 * mu * mu + c1) * (2 * var + c2))
    assert ssim_global(x, y) == pytest.approx(expected)
    assert ssim_global(x, x) == pytest.approx(1.0)
    # darker copy: y = x / 2 -> mu_y = 63.75, var_y = var / 4, cov = var / 2
    z = x / 2
    mz, vz, cz = 63.75, var / 4, var / 2
    expected_z = ((2 * mu * mz + c1) * (2 * cz + c2)) / ((mu**2 + mz**2 + c1) * (var + vz + c2))
    assert ssim_global(x, z) == pytest.approx(expected_z)
    # channels averaged: channel 0 identical (1.0), channel 1 = the first example
    two = ssim_global(torch.stack([x, x]), torch.stack([x, y]))
    assert two == pytest.approx((1.0 + expected) / 2)


@pytest.fixture(scope="module")
def astronaut_pair() -> tuple[np.ndarray, np.ndarray]:
    clean = skimage.data.astronaut()[::2, ::2].astype(np.float64)  # 256x256x3 keeps the test quick
    rng = np.random.default_rng(0)
    noisy = np.clip(clean + rng.normal(0, 15, clean.shape), 0, 255)
    return clean, noisy


def _chw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1)


def test_psnr_matches_skimage(astronaut_pair: tuple[np.ndarray, np.ndarray]) -> None:
    clean, noisy = astronaut_pair
    ref = skimage.metrics.peak_signal_noise_ratio(clean, noisy, data_range=255)
    assert psnr(_chw(clean), _chw(noisy)) == pytest.approx(ref, rel=1e-12)


def test_ssim_windowed_matches_skimage(astronaut_pair: tuple[np.ndarray, np.ndarray]) -> None:
    clean, noisy = astronaut_pair
    ref = skimage.metrics.structural_similarity(
        clean, noisy, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, channel_axis=2
    )
    assert ssim_windowed(_chw(clean), _chw(noisy)) == pytest.approx(ref, abs=1e-10)
    gray_ref = skimage.metrics.structural_similarity(
        clean[..., 0], noisy[..., 0], data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim_windowed(torch.from_numpy(clean[..., 0]), torch.from_numpy(noisy[..., 0])) == pytest.approx(gray_ref, abs=1e-10)
    # batch mean of per-image values
    batch = ssim_windowed(torch.stack([_chw(clean), _chw(clean)]), torch.stack([_chw(noisy), _chw(clean)]))
    assert batch == pytest.approx((ref + 1.0) / 2, abs=1e-10)


def test_global_and_windowed_ssim_differ(astronaut_pair: tuple[np.ndarray, np.ndarray]) -> None:
    clean, noisy = astronaut_pair
    # global statistics hide local noise: the spec's SSIM is much closer to 1 than the windowed one
    assert ssim_global(_chw(clean), _chw(noisy)) > ssim_windowed(_chw(clean), _chw(noisy)) + 0.1


def test_image_metrics_reject_bad_input() -> None:
    with pytest.raises(ValueError):
        psnr(torch.zeros(3, 4, 4), torch.zeros(3, 4, 5))
    with pytest.raises(ValueError):
        ssim_windowed(torch.zeros(8, 8), torch.zeros(8, 8))
    with pytest.raises(ValueError):
        ssim_global(torch.zeros(1, 1, 1, 2, 2), torch.zeros(1, 1, 1, 2, 2))


# ---------------------------------------------------------------- segmentation (§3 mIoU)


def test_mean_iou_hand_example_with_ignore_index() -> None:
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 0]])
    # counted pixels (target != 255): t/p = 0/0, 0/1, 1/1, 1/1, 2/2, 2/0
    cm = confusion_matrix(pred, target, num_classes=4)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    # IoU_0 = 1 / (2 + 2 - 1) = 1/3, IoU_1 = 2 / (2 + 3 - 2) = 2/3, IoU_2 = 1 / (2 + 1 - 1) = 1/2;
    # class 3 absent from both -> excluded
    assert mean_iou(pred, target, num_classes=4) == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    # accumulating confusion matrices over a batch equals one call on the whole batch
    halves = confusion_matrix(pred[:1], target[:1], 4) + confusion_matrix(pred[1:], target[1:], 4)
    assert mean_iou_from_confusion(halves) == mean_iou(pred, target, 4)


def test_mean_iou_class_only_predicted_counts_as_zero() -> None:
    # class 1 is predicted but never in the target: IoU_1 = 0 / 1, kept in the mean
    assert mean_iou(torch.tensor([0, 1]), torch.tensor([0, 0]), num_classes=2) == pytest.approx((1 / 2 + 0) / 2)


def test_mean_iou_rejects_bad_labels() -> None:
    with pytest.raises(ValueError):
        mean_iou(torch.tensor([0, 5]), torch.tensor([0, 1]), num_classes=3)
    with pytest.raises(ValueError):
        mean_iou(torch.tensor([0, 1]), torch.tensor([255, 255]), num_classes=3)


# ---------------------------------------------------------------- Impact and error (eqs. 1–2)


def test_impact_and_relative_error() -> None:
    assert impact(0.90, 0.88) == pytest.approx(2.0 / 0.90)
    assert impact(30.0, 30.0) == 0.0
    assert relative_error(0.85, 0.90) == pytest.approx(0.05 / 0.90)
    assert relative_error_percent(0.85, 0.90) == pytest.approx(5.0 / 0.90)
    assert relative_error(0.95, 0.90) == pytest.approx(relative_error(0.85, 0.90))
    with pytest.raises(ValueError, match="non-zero"):
        impact(0.0, 0.5)
    with pytest.raises(ValueError):
        relative_error(0.5, 0.0)


# ---------------------------------------------------------------- rates (IEEE 3304)


@pytest.mark.parametrize(("k", "n"), [(0, 1), (0, 20), (1, 20), (7, 50), (50, 50), (3, 1000)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_clopper_pearson_matches_scipy_binomtest(k: int, n: int, confidence: float) -> None:
    ref = st.binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    low, high = clopper_pearson(k, n, confidence)
    assert low == pytest.approx(ref.low, abs=1e-12)
    assert high == pytest.approx(ref.high, abs=1e-12)


def test_rates() -> None:
    fa = false_alarm_rate(2, 40)
    assert isinstance(fa, Rate) and (fa.value, fa.k, fa.n) == (0.05, 2, 40)
    assert fa.low < 0.05 < fa.high
    md = missed_detection_rate(0, 0)
    assert math.isnan(md.value) and (md.low, md.high) == (0.0, 1.0)
    with pytest.raises(ValueError):
        false_alarm_rate(5, 3)
    with pytest.raises(ValueError):
        missed_detection_rate(-1, 3)


@settings(deadline=None, max_examples=60)
@given(hs.integers(1, 300), hs.data())
def test_binomial_sf_matches_scipy(n: int, data) -> None:
    from nnw.metrics.rates import binomial_sf

    k = data.draw(hs.integers(-2, n + 2))
    p = data.draw(hs.sampled_from([0.5, 0.1, 1 / 7, 0.9]))
    assert binomial_sf(k, n, p) == pytest.approx(float(st.binom.sf(k - 1, n, p)), rel=1e-9, abs=1e-300)
