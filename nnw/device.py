"""Device selection and per-worker GPU pinning (``--nnw-device auto|cpu|cuda``).

Under pytest-xdist each worker pins one GPU from ``PYTEST_XDIST_WORKER`` *before* CUDA is
initialized, indexing into any existing ``CUDA_VISIBLE_DEVICES`` (see :func:`pin_worker_gpu`).
"""
from __future__ import annotations

import os
import re
import subprocess

_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(spec: str = "auto"):
    """Return the ``torch.device`` for ``auto`` (CUDA when available), ``cpu`` or ``cuda[:i]``."""
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--nnw-device {spec!r} asked for CUDA, but torch sees no CUDA device")
        return torch.device(spec)
    raise ValueError(f"unknown device {spec!r}: expected one of {', '.join(_CHOICES)} or cuda:N")


def _visible_gpu_count() -> int:
    """Count GPUs without initializing CUDA in this process (nvidia-smi, else 0)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([v for v in visible.split(",") if v.strip() and v.strip() != "-1"])
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def pin_worker_gpu(worker: str | None = None) -> str | None:
    """Pin this xdist worker to one GPU by setting ``CUDA_VISIBLE_DEVICES`` (call before CUDA init).

    ``gw3`` on a machine with ``CUDA_VISIBLE_DEVICES=4,5`` gets GPU ``5`` (3 mod 2 = 1). Returns the
    device id pinned, or None when there is no worker id or no GPU.
    """
    worker = worker if worker is not None else os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return None
    m = re.fullmatch(r"gw(\d+)", worker)
    if not m:
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else None
    count = len(ids) if ids is not None else _visible_gpu_count()
    if count == 0:
        return None
    if ids is None:
        ids = [str(i) for i in range(count)]
    chosen = ids[int(m.group(1)) % count]
    os.environ["CUDA_VISIBLE_DEVICES"] = chosen
    return chosen
