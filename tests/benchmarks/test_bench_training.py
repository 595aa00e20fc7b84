"""Training throughput of the embedded default profile: ResNet8 on the embedded classification set.

One epoch of the profile's recipe (batch size, augmentation, SGD, schedule) per round, on the profile's
CPU thread count; the throughput in images/s goes to ``benchmark.extra_info``. Reported, never
asserted. Needs a serial run (``pytest tests/benchmarks -m bench``): pytest-benchmark is disabled under xdist.
"""
from __future__ import annotations

from typing import Any

import pytest
import torch

from nnw.profile import load_profile
from nnw.tasks import build_task
from nnw.training import train


@pytest.fixture(scope="module")
def embedded_resnet8():
    profile = load_profile("embedded")
    return profile, build_task("ResNet8", profile.tasks["ResNet8"])


@pytest.fixture
def serial_benchmark(benchmark: Any) -> Any:
    if benchmark.disabled:
        pytest.skip("benchmarks need a serial run (pytest-benchmark is disabled under xdist or --benchmark-disable)")
    return benchmark


@pytest.mark.cost
@pytest.mark.benchmark(group="training-embedded")
def test_bench_training_resnet8_embedded(serial_benchmark: Any, embedded_resnet8) -> None:
    profile, task = embedded_resnet8
    threads = int(profile.data.get("cpu_threads", 0))
    before = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        results = []

        def one_epoch(model):
            results.append(train(model, task, seed=0, epochs=1, device="cpu"))

        serial_benchmark.pedantic(one_epoch, setup=lambda: ((task.build_model(0),), {}), rounds=2, warmup_rounds=0,
                       iterations=1)
    finally:
        torch.set_num_threads(before)
    res = results[-1]
    images = res.steps * min(task.recipe.batch_size, len(task.train))
    assert res.steps == len(task.train) // task.recipe.batch_size
    assert all(h["loss"] == h["loss"] for h in res.history)  # finite, not NaN: it really trained
    mean = serial_benchmark.stats.stats.mean
    serial_benchmark.extra_info.update({
        "model": "ResNet8", "profile": "embedded", "device": "cpu", "threads": torch.get_num_threads() if threads <= 0
        else threads, "batch_size": task.recipe.batch_size, "images_per_epoch": images,
        "images_per_s": images / mean, "epoch_seconds": mean,
    })
