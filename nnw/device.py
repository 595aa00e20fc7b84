"""Device selection and per-worker GPU pinning (``--nnw-device auto|cpu|cuda``).

Under pytest-xdist each worker pins one GPU from ``PYTEST_XDIST_WORKER`` *before* CUDA is
initialized, indexing into any existing ``CUDA_VISIBLE_DEVICES`` (see :func:`pin_worker_gpu`).
"""
from __future__ import annotations

import functools
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


# -- CPU numerics path: bf16 autocast where the CPU computes bf16 natively --------------------------
#: Environment override of the CPU bf16 decision: "auto" (default), "1" (force on), "0" (force off).
CPU_BF16_ENV = "NNW_CPU_BF16"

#: x86 features with native bf16 arithmetic (oneDNN then runs bf16 convolutions and matmuls faster
#: than fp32: AMX tiles on Intel Sapphire Rapids and later, AVX512-BF16 on Cooper Lake and AMD Zen 4+).
#: Without them oneDNN emulates bf16 and a training step gets several times *slower* than in fp32
#: (measured 7-10x on an AVX2-only AMD EPYC), so such CPUs stay in fp32.
NATIVE_BF16_FEATURES = ("amx_bf16", "avx512_bf16")


@functools.lru_cache(maxsize=1)
def cpu_features() -> frozenset[str]:
    """The CPU feature flags: torch's cpuinfo view (any OS) merged with ``/proc/cpuinfo`` (Linux)."""
    flags: set[str] = set()
    try:
        import torch

        caps = torch._C._cpu._get_cpu_capability()  # cpuinfo, as torch itself dispatches on it
        flags.update(k for k, v in caps.items() if v is True)
    except Exception:  # an older or other torch build: fall back to the OS
        pass
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    flags.update(value.split())
                    break
    except OSError:
        pass
    return frozenset(flags)


def cpu_bf16(features: frozenset[str] | set[str] | None = None, env: str | None = None) -> bool:
    """Whether CPU training and inference run under bf16 autocast (where the recipe asks for bf16).

    A function of the CPU's feature flags (native bf16: :data:`NATIVE_BF16_FEATURES`) and of the
    ``NNW_CPU_BF16`` override ("auto", "1"/"on", "0"/"off") only — never of a timing, so one machine
    always takes the same path and the model cache's keys (``Zoo.numerics["cpu_bf16"]``) stay stable.
    """
    setting = (os.environ.get(CPU_BF16_ENV, "auto") if env is None else env).strip().lower()
    if setting in ("1", "on", "true", "yes"):
        return True
    if setting in ("0", "off", "false", "no"):
        return False
    if setting not in ("", "auto"):
        raise ValueError(f"{CPU_BF16_ENV}={setting!r}: expected auto, 1 or 0")
    features = cpu_features() if features is None else features
    return any(f in features for f in NATIVE_BF16_FEATURES)


def use_bf16(device, wanted: bool) -> bool:
    """bf16 autocast on ``device`` for a recipe with ``bf16 = wanted``: CUDA always, CPU per :func:`cpu_bf16`."""
    if not wanted:
        return False
    kind = getattr(device, "type", str(device))
    if kind == "cuda":
        return True
    return kind == "cpu" and cpu_bf16()
