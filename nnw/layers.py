"""Weight layers of a model: what Modifications and Mark embedding operate on.

NNW-TEC §7.2–§7.4 and the NNW-NNT Modification table act on the *weights* of a
network's layers (Gaussian noise, pruning, quantization, the NCT index
selection, RTW's W_l). A "weight layer" here is the ``weight`` parameter of a
``Conv1d``/``Conv2d``/``ConvTranspose2d`` or ``Linear`` module; biases and
normalisation parameters are excluded. Layers are named by their qualified
parameter name (e.g. ``"layer1.0.conv1.weight"``) and listed in
``named_parameters`` order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

#: Module types whose ``weight`` counts as a weight layer.
WEIGHT_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.ConvTranspose2d,
    nn.Linear,
)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); CPU for a model with neither."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def weight_layers(model: nn.Module) -> dict[str, nn.Parameter]:
    """Ordered mapping ``qualified name -> weight`` of the model's conv/linear layers.

    Order is that of ``model.named_parameters()``; a parameter shared by
    several modules appears once, under its first name.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"weight_layers expects a torch.nn.Module, got {type(model).__name__}")
    owners: dict[int, nn.Module] = {}
    for module in model.modules():
        if isinstance(module, WEIGHT_LAYER_TYPES):
            weight = getattr(module, "weight", None)
            if isinstance(weight, nn.Parameter):
                owners.setdefault(id(weight), module)
    layers: dict[str, nn.Parameter] = {}
    for name, param in model.named_parameters():
        if id(param) in owners and (name == "weight" or name.endswith(".weight")):
            layers[name] = param
    return layers


def resolve_layers(
    model: nn.Module, names: Sequence[str] | None = None
) -> dict[str, nn.Parameter]:
    """Select weight layers by qualified name; ``None`` selects all of them.

    Raises ``ValueError`` naming the unknown names and listing the valid ones.
    The result follows the order of ``names`` (duplicates collapse).
    """
    layers = weight_layers(model)
    if names is None:
        return layers
    if isinstance(names, str):
        names = [names]
    unknown = [n for n in names if n not in layers]
    if unknown:
        raise ValueError(
            f"unknown weight layer name(s) {unknown}; expected names from "
            f"weight_layers(model): {list(layers)}"
        )
    if len(names) == 0:
        raise ValueError(
            "expected at least one weight layer name (or None for all layers), got an empty sequence"
        )
    return {n: layers[n] for n in names}


def scale_channels(channels: int, width: float, minimum: int = 1) -> int:
    """Channel count ``channels * width`` rounded to an int (at least ``minimum``).

    The ``width`` knob of the reference models (NNW-TEC §6.1) runs the same
    topologies at reduced sizes for the embedded CPU profile.
    """
    check_width(width)
    return max(minimum, int(round(channels * width)))


def check_width(width: float) -> float:
    """Validate a width multiplier: a finite float > 0."""
    try:
        w = float(width)
    except (TypeError, ValueError):
        raise ValueError(f"width must be a positive finite number, got {width!r}") from None
    if not (w > 0 and w != float("inf")):
        raise ValueError(f"width must be a positive finite number, got {width!r}")
    return w


def num_weights(layers: dict[str, torch.Tensor]) -> int:
    """Total number of scalar weights in a mapping of layers."""
    return sum(int(p.numel()) for p in layers.values())


__all__ = [
    "model_device",
    "WEIGHT_LAYER_TYPES",
    "weight_layers",
    "resolve_layers",
    "num_weights",
    "scale_channels",
    "check_width",
]
