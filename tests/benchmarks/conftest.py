"""Benchmarks (pytest-benchmark) are a separate, serial pass: ``pytest tests/benchmarks -m bench``.

They are marked ``bench`` here and deselected from the default run by the ``-m "not bench"`` in
pyproject's addopts, so ``pytest tests`` stays within its time budget.
"""
import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "benchmarks" in item.path.parts:
            item.add_marker(pytest.mark.bench)
