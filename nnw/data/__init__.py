"""Datasets of NNW-TEC §6.1 (CIFAR10, Cityscapes, Div2K), offline stand-ins and TBW trigger sets.

Every loader returns an :class:`ImageSet` of in-memory tensors: images uint8
N x C x H x W, class labels int64 N, segmentation maps int64 N x H x W (255 = ignore).
Real datasets are read from a local root and never downloaded; the ``embedded_*``
sets are built offline from the photos scikit-image ships; :func:`make_trigger_set`
makes the TBW-Key of §7.4.
"""

from __future__ import annotations

from nnw.data.cifar10 import CIFAR10_CLASSES, load_cifar10, restricted_unpickle
from nnw.data.cityscapes import (
    LABEL_TO_TRAINID,
    TRAINID_NAMES,
    TRAINID_PALETTE,
    colorize_trainids,
    labelids_to_trainids,
    load_cityscapes,
)
from nnw.data.div2k import load_div2k
from nnw.data.embedded import (
    embedded_classification,
    embedded_generation,
    embedded_segmentation,
    embedded_superres,
)
from nnw.data.errors import DataError, DataRootError, UnsafeDataError
from nnw.data.imageset import IGNORE_INDEX, ImageSet
from nnw.data.triggers import make_trigger_set

__all__ = [
    "CIFAR10_CLASSES",
    "IGNORE_INDEX",
    "LABEL_TO_TRAINID",
    "TRAINID_NAMES",
    "TRAINID_PALETTE",
    "DataError",
    "DataRootError",
    "ImageSet",
    "UnsafeDataError",
    "colorize_trainids",
    "embedded_classification",
    "embedded_generation",
    "embedded_segmentation",
    "embedded_superres",
    "labelids_to_trainids",
    "load_cifar10",
    "load_cityscapes",
    "load_div2k",
    "make_trigger_set",
    "restricted_unpickle",
]
