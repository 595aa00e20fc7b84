"""Errors raised by the dataset loaders of :mod:`nnw.data`.

NNW-TEC §6.1 names the datasets (CIFAR10, Cityscapes, Div2K); the suite reads them
from a local root and never downloads them, so a missing, incomplete or corrupt root
must fail with one clear message that says what was expected and where.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DataError", "DataRootError", "UnsafeDataError"]


class DataError(Exception):
    """Base class of every error raised by :mod:`nnw.data`."""


class DataRootError(DataError):
    """A dataset root is missing, incomplete, or holds a truncated/corrupt file.

    ``DataRootError(path, problem, layout, hint=...)`` names the offending path, adds the
    optional ``hint`` line and shows the expected layout; ``DataRootError(message)``
    carries a ready-made message (``path`` is then ``None``).
    """

    def __init__(self, path: str | Path, problem: str | None = None, layout: str | None = None,
                 hint: str | None = None) -> None:
        self.problem = problem
        self.layout = layout
        if problem is None:
            self.path: Path | None = None
            super().__init__(str(path))
            return
        self.path = Path(path)
        message = f"{problem}: {self.path}"
        if hint:
            message += "\n" + hint
        if layout:
            message += "\nExpected layout:\n" + layout.rstrip("\n")
        super().__init__(message)


class UnsafeDataError(DataError):
    """A data file asked for something that loading it must never do (nothing in it was executed).

    ``UnsafeDataError(path, refused, allowed)``: a pickle global outside the allow-list
    ``allowed``; ``UnsafeDataError(path, refused)``: ``refused`` says what was refused and why.
    ``hint`` (optional) says what to use instead.
    """

    def __init__(self, path: str | Path, refused: str, allowed: tuple[str, ...] = (),
                 hint: str | None = None) -> None:
        self.path = Path(path)
        self.refused = refused
        if allowed:
            what = (f"it asks for the global {refused!r}, which is not one of the allowed globals "
                    f"({', '.join(allowed)})")
        else:
            what = refused
        message = f"refused to unpickle {self.path}: {what}; nothing in the file was executed"
        if hint:
            message += "\n" + hint
        super().__init__(message)


def listed_files(root: Path, folders, pattern: str, name: str, none_found: str, layout: str,
                 limit: int | None = None) -> list[Path]:
    """The sorted files matching ``pattern`` in ``folders[0]``, at most ``limit``: one clear
    :class:`DataRootError` when the root or any of ``folders`` is missing (``name``: the dataset's)
    or when no file matches (``none_found``)."""
    root = Path(root)
    for folder in folders:
        if not folder.is_dir():
            what = f"{name} root not found" if not root.is_dir() else f"missing {name} folder"
            raise DataRootError(root if not root.is_dir() else folder, what, layout)
    files = sorted(folders[0].glob(pattern))
    if not files:
        raise DataRootError(folders[0], none_found, layout)
    return files if limit is None else files[:limit]
