"""Reading one image file of a dataset root (Cityscapes, DIV2K): one clear error naming the file."""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image

from nnw.data.errors import DataRootError

__all__ = ["read_image"]


def read_image(path: Path, layout: str) -> Image.Image:
    """The decoded image at ``path``; :class:`DataRootError` naming ``path`` if it is corrupt,
    truncated, or so large that PIL suspects a decompression bomb (``Image.MAX_IMAGE_PIXELS``:
    both PIL's warning and its error are refused, so nothing that large is ever decoded)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                return image.copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise DataRootError(
            path, f"image refused as a possible decompression bomb ({error}; the limit is PIL's "
                  f"Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS})", layout) from None
    except (OSError, ValueError, SyntaxError) as error:
        raise DataRootError(path, f"truncated or corrupt image ({error})", layout) from error
