"""``python -m nnw``: the ``nnw`` command line (see :mod:`nnw.cli`)."""
from nnw.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
