"""Shared helpers: a flat view of a model's weight layers, seeds, and the architecture check.

The flat index space is the concatenation, in :func:`nnw.layers.weight_layers` order, of every
weight layer flattened row-major — the same convention NNW-TEC's NCT uses (§7.2.2), built here
only from public names.
"""
from __future__ import annotations

import copy
import hashlib
from typing import Any

import torch
from torch import nn

from nnw.layers import weight_layers
from nnw.methods.base import Key, KeyMismatchError


def derive_seed(method: str, purpose: str, seed: int) -> int:
    """A 63-bit generator seed for (method, purpose, seed): independent streams per purpose."""
    digest = hashlib.sha256(f"{method}:{purpose}:{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


def generator(method: str, purpose: str, seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from (method, purpose, seed) — never the global RNG."""
    return torch.Generator(device="cpu").manual_seed(derive_seed(method, purpose, seed))


def signature(model: nn.Module) -> dict[str, Any]:
    """Architecture signature stored in the Key: names and shapes of the weight layers."""
    layers = weight_layers(model)
    return {
        "weight_layers": [[name, list(p.shape)] for name, p in layers.items()],
        "n_weight_params": int(sum(p.numel() for p in layers.values())),
    }


def check_signature(method: str, model: nn.Module, key: Key) -> None:
    """Raise :class:`KeyMismatchError` naming the first difference between model and key."""
    if key.method != method:
        raise KeyMismatchError(f"this is a {key.method!r} key; {method} cannot use it")
    want = key.model_signature.get("weight_layers")
    if want is None:
        raise KeyMismatchError(f"{method} key has no 'weight_layers' in its model_signature")
    have = signature(model)["weight_layers"]
    if have == [[n, list(s)] for n, s in want]:
        return
    have_d, want_d = {n: s for n, s in have}, {n: list(s) for n, s in want}
    missing = [n for n in want_d if n not in have_d]
    if missing:
        raise KeyMismatchError(f"{method} key does not fit this model: it lacks weight layer(s) {missing[:5]}")
    extra = [n for n in have_d if n not in want_d]
    if extra:
        raise KeyMismatchError(f"{method} key does not fit this model: unknown weight layer(s) {extra[:5]}")
    diff = [n for n in want_d if want_d[n] != have_d[n]]
    if diff:
        n = diff[0]
        raise KeyMismatchError(f"{method} key does not fit this model: layer {n!r} has shape "
                               f"{tuple(have_d[n])}, the key expects {tuple(want_d[n])}")
    raise KeyMismatchError(f"{method} key does not fit this model: weight layers in another order")


def flat_weights(model: nn.Module) -> torch.Tensor:
    """All weight-layer values as one detached float32 CPU vector (flat index space)."""
    with torch.no_grad():
        return torch.cat([p.detach().reshape(-1).to("cpu", torch.float32) for p in weight_layers(model).values()])


def read(model: nn.Module, indices: torch.Tensor) -> torch.Tensor:
    """Values at global ``indices`` (float32, CPU), in the order of ``indices``."""
    return flat_weights(model).index_select(0, indices.to(torch.int64))


def write(model: nn.Module, indices: torch.Tensor, values: torch.Tensor) -> None:
    """Write ``values`` at global ``indices`` of ``model`` in place."""
    indices = indices.to(torch.int64)
    start = 0
    with torch.no_grad():
        for p in weight_layers(model).values():
            end = start + p.numel()
            sel = (indices >= start) & (indices < end)
            if bool(sel.any()):
                flat = p.detach().contiguous().view(-1).clone()
                loc = (indices[sel] - start).to(p.device)
                flat.index_copy_(0, loc, values[sel].to(device=p.device, dtype=p.dtype))
                p.copy_(flat.view(p.shape))
            start = end


def copy_model(model: nn.Module) -> nn.Module:
    """A deep copy (embed must leave its input untouched)."""
    return copy.deepcopy(model)
