"""Fine-pruning (Liu, Dolan-Gavitt & Garg, "Fine-Pruning: Defending Against Backdooring Attacks on
Deep Neural Networks", RAID 2018): an attack beyond the standard (adversarial stress section).

Backdoor behaviour — and trigger-set watermarks are backdoors — lives in units that stay dormant on
clean inputs. The attacker (i) runs clean data (the task's training inputs, ``n`` of them) through
the model and measures the mean activation of every unit of the *last convolutional layer* (the
channel space read by the classifier, see :mod:`nnw.modifications.function_preserving`), (ii)
prunes the ``P`` % least active units — their incoming weights, biases and BatchNorm entries and
their outgoing weights are zeroed, which removes them — and (iii) fine-tunes ``E`` epochs with the
task's loop at the fine-tuning learning rate, the pruned units kept at zero after every step.
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from nnw.hooks import TrainingHook
from nnw.layers import weight_layers
from nnw.modifications.base import Modification, ModificationContext, check_int, check_real, register
from nnw.modifications.function_preserving import ChannelSpace, _dims, analyse


def last_conv_space(model: nn.Module) -> ChannelSpace:
    """The channel space produced by the model's last convolution (Liu et al.'s "last conv layer")."""
    convs = [n[: -len(".weight")] for n, w in weight_layers(model).items() if w.dim() >= 3]
    spaces = [s for s in analyse(model).transformable()]
    for name in reversed(convs):
        for s in spaces:
            if name in s.producers:
                return s
    raise ValueError(f"{type(model).__name__}: no prunable convolution output (channel space) found")


@torch.no_grad()
def mean_activations(model: nn.Module, space: ChannelSpace, x: torch.Tensor, prepare, batch: int = 250) -> torch.Tensor:
    """Mean activation of each unit of ``space`` on the uint8 inputs ``x`` (as read by its consumer)."""
    modules = dict(model.named_modules())
    consumer = modules[space.consumers[0]]
    total = torch.zeros(space.channels, dtype=torch.float64)
    count = 0

    def grab(_module, args):
        nonlocal count
        a = args[0].detach().double()
        total.add_(a.transpose(0, 1).reshape(a.shape[1], -1).sum(1).cpu())
        count += a.numel() // a.shape[1]

    handle = consumer.register_forward_pre_hook(grab)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for i in range(0, len(x), batch):
            model(prepare(x[i:i + batch]).to(device))
    finally:
        handle.remove()
        model.train(was_training)
    return total / max(1, count)


@torch.no_grad()
def prune_units(model: nn.Module, space: ChannelSpace, units: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Zero ``units`` of ``space`` (incoming rows, biases, BatchNorm affine, outgoing columns); return
    the (tensor, boolean mask) pairs that keep them at zero."""
    modules = dict(model.named_modules())
    masks = []

    def add(t: torch.Tensor | None, dim: int) -> None:
        if t is None:
            return
        m = torch.zeros(t.shape[dim], dtype=torch.bool, device=t.device)
        m[units.to(t.device)] = True
        shape = [1] * t.dim()
        shape[dim] = -1
        mask = m.view(shape).expand_as(t)
        t.masked_fill_(mask, 0)
        masks.append((t, mask))

    for p in space.producers:
        out_dim, _ = _dims(modules[p])
        add(modules[p].weight, out_dim)
        add(modules[p].bias, 0)
    for b in space.bns:
        add(modules[b].weight, 0)
        add(modules[b].bias, 0)
    for c in space.consumers:
        _, in_dim = _dims(modules[c])
        add(modules[c].weight, in_dim)
    return masks


class _KeepPruned(TrainingHook):
    def __init__(self, masks):
        self.masks = masks

    def after_step(self, model, ctx) -> None:
        with torch.no_grad():
            for t, mask in self.masks:
                t.masked_fill_(mask, 0)


@register
class FinePruning(Modification):
    """``fine_pruning(P=...,E=...)``: prune the P % least active units of the last conv layer on clean
    data, then fine-tune E epochs (Liu et al. 2018)."""

    family: ClassVar[str] = "fine_pruning"
    needs_training: ClassVar[bool] = True
    defaults = {"E": 1, "n": 500}

    def __init__(self, P: float, E: int = 1, n: int = 500) -> None:
        super().__init__({"P": check_real("P", P, low=0.0, high=100.0, what="percentage of last-layer units pruned"),
                          "E": check_int("E", E, low=0, high=1000, what="fine-tuning epochs"),
                          "n": check_int("n", n, low=1, high=10**7, what="clean images to measure activations")})

    def _modify(self, model: nn.Module, *, seed: int, context: ModificationContext | None) -> nn.Module | None:
        task = context.task
        space = last_conv_space(model)
        x = task.train.x[: self._params["n"]]
        act = mean_activations(model.to(context.device), space, x, task.prepare)
        k = int(round(self._params["P"] / 100.0 * space.channels))
        order = torch.sort(act, stable=True).indices  # increasing mean activation: dormant first
        masks = prune_units(model, space, order[:k])
        if self._params["E"] > 0:
            context.train(model, task, epochs=self._params["E"], seed=50_000 + seed, device=context.device,
                          lr=task.recipe.finetune_lr, hooks=[_KeepPruned(masks)])
        return None


__all__ = ["FinePruning", "last_conv_space", "mean_activations", "prune_units"]
