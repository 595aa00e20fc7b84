"""Fine-tuning (NNW-TEC §3: "resumes the training of a watermarked NN Model for E additional
epochs"; IEEE 3304 table: up to 0.5x the initial number of epochs; NNW-TEC grid E in [1, 10]).

The task's own training loop and data resume training with the task's optimizer at the constant
fine-tuning learning rate ``recipe.finetune_lr`` (MPAI's reference software: SGD, lr 0.01,
momentum 0.9, weight decay 5e-4). The attacker knows no key: no watermark hook is active.
"""
from __future__ import annotations

from typing import ClassVar

from torch import nn

from nnw.modifications.base import Modification, ModificationContext, check_int, register


@register
class FineTuning(Modification):
    """``finetuning(E=...)``: E more epochs of the task's training loop."""

    family: ClassVar[str] = "finetuning"
    needs_training: ClassVar[bool] = True
    #: E epochs are E − 1 epochs and one more, exactly (constant learning rate, data order per epoch,
    #: optimizer state carried): the model cache builds ``finetuning(E)`` from ``finetuning(E − 1)``
    resumes: ClassVar[str] = "E"

    def __init__(self, E: int) -> None:
        super().__init__({"E": check_int("E", E, low=1, high=1000, what="additional epochs")})

    def _modify(self, model: nn.Module, *, seed: int, context: ModificationContext | None) -> nn.Module | None:
        self.train_epochs(model, seed=seed, context=context)
        return None

    def train_epochs(self, model: nn.Module, *, seed: int, context: ModificationContext, start_epoch: int = 0,
                     optimizer_state=None) -> dict:
        """Epochs ``start_epoch`` .. E − 1 of this fine-tuning, in place, resuming from
        ``optimizer_state`` (that of the first ``start_epoch`` epochs); returns the optimizer state."""
        task = context.task
        result = context.train(model, task, epochs=self._params["E"], start_epoch=start_epoch,
                               optimizer_state=optimizer_state, seed=10_000 + seed, device=context.device,
                               lr=task.recipe.finetune_lr)
        return result.optimizer_state


__all__ = ["FineTuning"]
