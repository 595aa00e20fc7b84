"""pytest-benchmark timings of suite components (run serially: ``pytest tests/benchmarks -p no:xdist``)."""
