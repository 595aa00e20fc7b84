"""Repository-level conftest: the suite's fixtures live in the ``nnw.pytest_plugin`` plugin."""
