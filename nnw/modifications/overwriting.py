"""Watermark Overwriting (NNW-TEC §3: "inserts additional independent Watermark Payloads into a
watermarked NN Model, typically of the same size"; §7.2.6: five marks, five Actors).

``k`` further marks are inserted by the *same* method with independent keys (seeds not used by
the suite's own keys). Post-training methods embed them directly; in-training methods fine-tune
with the new mark's training hook active (the fine-tuning learning rate) for at most ``E`` epochs
per mark, until the method detects the new mark (``until="detected"``, the default: an Actor's
mark is overwritten only by marks that are really in the model) or for exactly ``E`` epochs
(``until="epochs"``).
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from torch import nn

from nnw.hooks import TrainingHook
from nnw.modifications.base import Modification, ModificationContext, check_choice, check_int, register

OVERWRITE_SEED_BASE = 1_000_000


@register
class Overwriting(Modification):
    """``overwriting(k=...)``: k more marks by the same method with independent keys."""

    family: ClassVar[str] = "overwriting"
    needs_training: ClassVar[bool] = True
    defaults = {"E": 5, "until": "detected"}
    procedure = 2  # 2: each further in-training mark fine-tuned until detected (1: exactly E = 1 epoch)

    def __init__(self, k: int, E: int = 5, until: str = "detected") -> None:
        super().__init__({"k": check_int("k", k, low=1, high=100, what="number of further marks"),
                          "E": check_int("E", E, low=1, high=100, what="epochs per mark (in-training methods)"),
                          "until": check_choice("until", until, ("detected", "epochs"))})

    def marks(self, model: nn.Module, *, seed: int, context: ModificationContext) -> Iterator[tuple[nn.Module, Any]]:
        """Insert the ``k`` further marks one by one into ``model`` (altered in place or replaced),
        yielding ``(model, key)`` after each: the model carrying the first ``i`` further marks and the
        Key of the ``i``-th. Stage ``i`` equals ``overwriting(k=i, E=E)`` applied with the same seed,
        which is how §7.2.6's "Actors recovered after each later mark" is read off one run."""
        method = context.method
        if method is None:
            raise ValueError(f"{self.name}: needs the method under test in the ModificationContext")
        config = dict(context.key.config) if context.key is not None else {}
        config.pop("overlap_with", None)
        for i in range(self._params["k"]):
            if "actor" in config:  # each further mark belongs to another Actor (§7.2.6: five Actors)
                config["actor"] = int(context.key.config.get("actor", 0)) + i + 1
            key = method.keygen(model, seed=OVERWRITE_SEED_BASE + 100 * seed + i, config=config)
            try:  # post-training insertion where the method offers it (e.g. NCT's embed)
                model = method.embed(model, key)
            except NotImplementedError:  # in-training only (RTW, TBW): fine-tune with the new mark's hook
                hook = method.training_hook(key, prepare=context.task.prepare)
                hooks = [hook]
                if self._params["until"] == "detected":
                    hooks.append(_StopWhenDetected(method, key, hook, context.task.prepare))
                context.train(model, context.task, epochs=self._params["E"], seed=30_000 + seed + i,
                              device=context.device, lr=context.task.recipe.finetune_lr, hooks=hooks)
                key = getattr(hook, "key", key)
            yield model, key

    def _modify(self, model: nn.Module, *, seed: int, context: ModificationContext | None) -> nn.Module | None:
        for model, _ in self.marks(model, seed=seed, context=context):
            pass
        return model


class _StopWhenDetected(TrainingHook):
    """Ends the fine-tuning after the first epoch at whose end the new mark is detected."""

    def __init__(self, method, key, mark_hook, prepare) -> None:
        self.method, self.key, self.mark_hook, self.prepare = method, key, mark_hook, prepare

    def on_epoch_end(self, model: nn.Module, epoch: int, ctx) -> None:
        key = getattr(self.mark_hook, "key", self.key)
        if self.method.detect(model, key, prepare=self.prepare).present:
            ctx.stop = True
            ctx.extra["overwriting_epochs"] = epoch + 1


__all__ = ["Overwriting"]
