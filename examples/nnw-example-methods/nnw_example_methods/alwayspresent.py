"""AlwaysPresent: a deliberately DISHONEST detector — the false-alarm clause must FAIL.

What it is for: a negative control of the suite's IEEE 3304 false-alarm clause. It inserts the
same mark as :class:`~nnw_example_methods.signspread.SignSpread`, so imperceptibility and
robustness look perfect, but its detector answers "present" for every model and every key
(its decision threshold is rho > -1, which nothing fails). On never-marked models every answer is
a false alarm: the observed rate is 100%, far above the nominal 5%, and a conformant suite must
refuse it. Never use it for anything else.
"""
from __future__ import annotations

from torch import nn

from nnw.methods.base import Detection, Key, Prepare

from nnw_example_methods.signspread import SignSpread


class AlwaysPresent(SignSpread):
    """SignSpread's insertion with a detector that always says "present" (false-alarm rate 100%)."""

    name = "AlwaysPresent"
    version = "0.1"

    def detect(self, model: nn.Module, key: Key, *, prepare: Prepare | None = None) -> Detection:
        honest = super().detect(model, key, prepare=prepare)
        return Detection(present=True, score=honest.score, threshold=-1.0, p_value=honest.p_value,
                         details={**honest.details, "honest_verdict": honest.present,
                                  "note": "AlwaysPresent ignores the statistic: every model is 'marked'"})
