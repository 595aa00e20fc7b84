"""Training-loop hooks through which traceability methods insert their mark in training.

NNW-TEC §7.2.3 (NCT: action at epoch α, α = 0 is the initialization), §7.3.2 (RTW: a
Regularization Term added to the task loss), §7.4.2 (TBW: trigger batches trained together
with the main data). :func:`nnw.training.train` calls every hook at these points.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass
class TrainContext:
    """What a hook may read about the run in progress (filled by the training loop)."""

    device: "torch.device"
    epochs: int                 # total number of epochs of this run
    steps_per_epoch: int
    epoch: int = 0              # current epoch (0-based)
    step: int = 0               # global batch-iteration counter
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    stop: bool = False          # a hook sets it to end the run after the current epoch


class TrainingHook:
    """Base class: every method is a no-op. Subclass and override what the method needs.

    Call order per run::

        on_train_start
        for epoch in range(start_epoch, epochs):
            on_epoch_start(model, epoch)          # NCT inserts when epoch == α
            for each batch:
                x, y = main batch
                extra = extra_batch(ctx)          # TBW: (x_trigger, y_trigger) concatenated to the batch
                loss = task_loss(model(x), y) + sum(extra_loss(model, ctx))   # RTW
                backward, step
                after_step(model, ctx)
            on_epoch_end(model, epoch)
        on_train_end
    """

    def on_train_start(self, model: "torch.nn.Module", ctx: TrainContext) -> None:
        pass

    def on_epoch_start(self, model: "torch.nn.Module", epoch: int, ctx: TrainContext) -> None:
        pass

    def extra_batch(self, ctx: TrainContext) -> "tuple[torch.Tensor, torch.Tensor] | None":
        """Inputs and targets to concatenate to the main batch (same dtype/layout as the task's)."""
        return None

    def extra_loss(self, model: "torch.nn.Module", ctx: TrainContext) -> "torch.Tensor | None":
        """A scalar added to the task loss (already weighted, e.g. λ·BCE for RTW)."""
        return None

    def after_step(self, model: "torch.nn.Module", ctx: TrainContext) -> None:
        pass

    def on_epoch_end(self, model: "torch.nn.Module", epoch: int, ctx: TrainContext) -> None:
        pass

    def on_train_end(self, model: "torch.nn.Module", ctx: TrainContext) -> None:
        pass
