"""nnw — conformance suite for neural-network traceability (MPAI-NNW / IEEE 3304-2023, NNW-TEC V1.0)."""

__version__ = "0.1.0"
SPEC_VERSION = "NNW-TEC-V1.0"
