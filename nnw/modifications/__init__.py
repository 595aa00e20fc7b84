"""Modification catalogue (NNW-NNT Modification table; IEEE 3304 table; NNW-TEC §7.x.6).

Weight-space Modifications are registered on import: ``noise`` (Gaussian noise, S),
``pruning`` (magnitude/L1 pruning, P), ``random_pruning`` (P), ``quantization`` (B).
Training-based ones (``finetuning`` E, ``distillation`` E/T, ``overwriting`` k) live in
modules named after their family and register themselves with :func:`register`; they
are loaded at the end of this module (and lazily by ``make_modification`` /
``parse_modification``), so :data:`MODIFICATIONS` lists the whole catalogue.
"""

from __future__ import annotations

from nnw.modifications.base import (
    FAMILIES,
    _load_family,
    MODIFICATIONS,
    Modification,
    ModificationContext,
    WeightModification,
    format_number,
    layer_generator,
    make_modification,
    parse_modification,
    register,
)
from nnw.modifications.noise import GaussianNoise
from nnw.modifications.pruning import (
    MagnitudePruning,
    RandomPruning,
    kth_smallest,
    prune_count,
    smallest_k_mask,
)
from nnw.modifications.quantization import Quantization, quantize_tensor

for _family in FAMILIES:
    _load_family(_family)
del _family

__all__ = [
    "FAMILIES",
    "MODIFICATIONS",
    "GaussianNoise",
    "MagnitudePruning",
    "Modification",
    "ModificationContext",
    "Quantization",
    "RandomPruning",
    "WeightModification",
    "format_number",
    "kth_smallest",
    "layer_generator",
    "make_modification",
    "parse_modification",
    "prune_count",
    "quantize_tensor",
    "register",
    "smallest_k_mask",
]

# Training-based Modifications (need a ModificationContext with the task and training loop).
from nnw.modifications.distillation import Distillation  # noqa: E402
from nnw.modifications.finetuning import FineTuning  # noqa: E402
from nnw.modifications.overwriting import Overwriting  # noqa: E402

__all__ += ["Distillation", "FineTuning", "Overwriting"]

# Attacks beyond the standard (adversarial stress section, nnw.stress): registered, never in the
# conformance grids.
from nnw.modifications.extraction import Extraction  # noqa: E402
from nnw.modifications.fine_pruning import FinePruning  # noqa: E402
from nnw.modifications.function_preserving import DummyNeurons, Permutation, Rescaling, SignFlip  # noqa: E402
from nnw.modifications.query import OODRefusal, QueryBlur, QueryJPEG, QueryShift  # noqa: E402

__all__ += ["DummyNeurons", "Extraction", "FinePruning", "OODRefusal", "Permutation", "QueryBlur", "QueryJPEG",
            "QueryShift", "Rescaling", "SignFlip"]
