"""Benchmarks of the weight-space Modifications on a full-size VGG16 (14.7M parameters).

Group "pruning-vgg16" compares our global magnitude pruning (one ``torch.kthvalue``
threshold and in-place masks) with ``torch.nn.utils.prune.global_unstructured`` +
``L1Unstructured`` at P = 50; both include the model deep copy. Timings are reported,
never asserted; each benchmark also checks its result so a fast wrong answer fails.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn.utils.prune as prune
from torch import nn

from nnw.layers import weight_layers
from nnw.modifications import GaussianNoise, MagnitudePruning, Quantization, prune_count

PEDANTIC = {"rounds": 3, "warmup_rounds": 1, "iterations": 1}


@pytest.fixture(scope="module")
def vgg16() -> nn.Module:
    try:
        from nnw.models import build_model
    except ImportError as exc:  # pragma: no cover - depends on the models package
        pytest.skip(f"nnw.models.build_model is not importable: {exc}")
    return build_model("VGG16", seed=0).eval()


@pytest.fixture
def bench(benchmark: Any) -> Any:
    if benchmark.disabled:
        pytest.skip("benchmarks need a serial run (pytest-benchmark is disabled under xdist)")
    return benchmark


def _zero_count(model: nn.Module) -> int:
    return sum(int((w == 0).sum()) for w in weight_layers(model).values())


def _torch_global_l1(model: nn.Module, amount: float) -> nn.Module:
    out = copy.deepcopy(model)
    params = [
        (module, "weight")
        for module in out.modules()
        if isinstance(module, (nn.Conv2d, nn.Linear))
    ]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    for module, name in params:
        prune.remove(module, name)
    return out


@pytest.mark.benchmark(group="pruning-vgg16")
def test_bench_pruning_ours_vgg16(bench: Any, vgg16: nn.Module) -> None:
    mod = MagnitudePruning(50)
    out = bench.pedantic(lambda: mod.apply(vgg16), **PEDANTIC)
    n = sum(w.numel() for w in weight_layers(vgg16).values())
    assert _zero_count(out) == prune_count(50, n)


@pytest.mark.benchmark(group="pruning-vgg16")
def test_bench_pruning_torch_vgg16(bench: Any, vgg16: nn.Module) -> None:
    assert set(weight_layers(vgg16)) == {
        f"{name}.weight" for name, m in vgg16.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    }
    out = bench.pedantic(lambda: _torch_global_l1(vgg16, 0.5), **PEDANTIC)
    ours = MagnitudePruning(50).apply(vgg16)
    # Same masks, except possibly which of the weights tied at the threshold magnitude
    # are pruned (torch.topk does not specify its tie order).
    flat = lambda m: torch.cat([w.detach().reshape(-1) for w in weight_layers(m).values()])  # noqa: E731
    theirs_zero, ours_zero, original = flat(out) == 0, flat(ours) == 0, flat(vgg16).abs()
    assert int(theirs_zero.sum()) == int(ours_zero.sum())
    differ = theirs_zero != ours_zero
    if bool(differ.any()):
        assert bool((original[differ] == original[ours_zero].max()).all())


@pytest.mark.benchmark(group="modifications-vgg16")
def test_bench_quantization_vgg16(bench: Any, vgg16: nn.Module) -> None:
    out = bench.pedantic(lambda: Quantization(8).apply(vgg16), **PEDANTIC)
    assert all(torch.unique(w.detach()).numel() <= 256 for w in weight_layers(out).values())


@pytest.mark.benchmark(group="modifications-vgg16")
def test_bench_noise_vgg16(bench: Any, vgg16: nn.Module) -> None:
    out = bench.pedantic(lambda: GaussianNoise(0.01).apply(vgg16, seed=1), **PEDANTIC)
    w0, w1 = weight_layers(vgg16)["features.0.weight"], weight_layers(out)["features.0.weight"]
    assert not torch.equal(w0, w1)
