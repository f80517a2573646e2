"""PNG sources: grey or RGB(A), 8 or 16 bit, decoded by imagecodecs (which keeps 16-bit RGB)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segpipe.errors import InputError
from segpipe.data.readers.axes import AxesSpec, canonical_shape
from segpipe.data.readers.source import Metadata, Source, Window, file_index, to_canonical

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class PngSource(Source):
    """A PNG image (decoded whole: PNGs are single 2D images)."""

    def __init__(self, path: Path, *, spec: AxesSpec = AxesSpec()):
        import imagecodecs

        self.path = path
        data = path.read_bytes()
        if not data.startswith(PNG_MAGIC):
            raise InputError(f"{path}: not a PNG file (no PNG signature in its first bytes)")
        try:
            self._array = imagecodecs.png_decode(data)
        except Exception as err:
            raise InputError(f"{path}: not a readable PNG ({type(err).__name__}: {err})") from err
        letters = "YX" if self._array.ndim == 2 else "YXS"
        self._mapped = spec.resolve(path, letters, self._array.shape)
        self.shape = canonical_shape(self._mapped, self._array.shape)
        self.dtype = self._array.dtype
        self.meta = Metadata(axes=self._mapped)

    def read(self, t: int, window: Window) -> np.ndarray:
        index, kept = file_index(self._mapped, t, window)
        return to_canonical(self._array[index], kept)
