"""Example out-of-tree traceability methods for the nnw conformance suite (MPAI-NNW / NNW-TEC V1.0).

Three post-training watermarks, registered in the ``nnw.methods`` entry-point group:

* :class:`~nnw_example_methods.signspread.SignSpread` — honest; expected to pass the suite.
* :class:`~nnw_example_methods.weaksmallest.WeakSmallest` — deliberately weak: magnitude pruning
  erases its mark while the model stays useful, so the robustness clause fails.
* :class:`~nnw_example_methods.alwayspresent.AlwaysPresent` — deliberately dishonest: its detector
  always answers "present", so the false-alarm clause fails.

They use the suite only through its public interface: :mod:`nnw.methods.base` (the protocol),
:mod:`nnw.metrics` (the Spearman detector) and :mod:`nnw.layers` (which weights are "weight
layers"). Submodules are imported lazily so that ``import nnw_example_methods`` stays cheap.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "SignSpread": "nnw_example_methods.signspread",
    "WeakSmallest": "nnw_example_methods.weaksmallest",
    "AlwaysPresent": "nnw_example_methods.alwayspresent",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nnw_example_methods' has no attribute {name!r}")


__all__ = ["SignSpread", "WeakSmallest", "AlwaysPresent", "__version__"]
