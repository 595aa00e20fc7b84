"""Device selection and the per-worker GPU pinning used under pytest-xdist (nnw.device)."""
import pytest

from nnw.device import pin_worker_gpu, resolve_device


def test_resolve_cpu_and_auto():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")


def test_resolve_rejects_unknown():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_cuda_without_gpu_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="sees no CUDA device"):
        resolve_device("cuda")


@pytest.mark.parametrize("worker, visible, expected", [
    ("gw0", "0,1,2,3", "0"), ("gw3", "0,1,2,3", "3"), ("gw5", "0,1,2,3", "1"),
    ("gw1", "4,5", "5"), ("gw2", "4,5", "4"),
])
def test_pin_worker_gpu_indexes_into_visible_devices(monkeypatch, worker, visible, expected):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert pin_worker_gpu(worker) == expected
    import os

    assert os.environ["CUDA_VISIBLE_DEVICES"] == expected


def test_pin_is_a_no_op_outside_xdist_or_without_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert pin_worker_gpu("") is None
    assert pin_worker_gpu("master") is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert pin_worker_gpu("gw0") is None
