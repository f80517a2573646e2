"""TIFF sources via tifffile: plain, multi-page, OME-TIFF and ImageJ hyperstacks.

A window of a multi-page series is read as the pages it covers (``TiffFile.asarray(key=...)``),
so a stack streams page by page; other layouts (a single tiled or striped page, pyramids) go
through tifffile's zarr view (``TiffFile.aszarr``), which decodes only the tiles or strips
touched.
Axes come from the OME or ImageJ metadata when present; physical pixel sizes from the OME
``PhysicalSize*`` attributes, or from the resolution tags and ImageJ ``spacing``/``unit``.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

from segpipe.errors import InputError
from segpipe.data.readers.axes import AxesSpec, canonical_shape
from segpipe.data.readers.source import Metadata, Source, Window, file_index, to_canonical
from segpipe.data.readers.units import length_factor, normalize_unit, unknown_unit

log = logging.getLogger(__name__)

TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


class TiffSource(Source):
    """One image series of a TIFF file: ``series``, or the first (saying once that the others are
    left out, if there are others)."""

    def __init__(self, path: Path, *, spec: AxesSpec = AxesSpec(), series: int | None = None):
        import tifffile
        import zarr

        self.path = path
        with open(path, "rb") as handle:
            if handle.read(4) not in TIFF_MAGIC:
                raise InputError(f"{path}: not a TIFF file (no TIFF signature in its first bytes)")
        try:
            self._tif = tifffile.TiffFile(path)
        except Exception as err:  # tifffile raises many types for damaged files
            raise InputError(f"{path}: not a readable TIFF ({type(err).__name__}: {err})") from err
        try:
            _check_whole(self._tif, path)
            count = len(self._tif.series)
            if series is not None and series >= count:
                raise InputError(f"{path}: has {count} image series; series {series} does not exist (they count from 0)")
            if series is None and count > 1:
                _left_out(str(path), tuple(tuple(s.shape) for s in self._tif.series))
            self._series = series or 0
            read = self._tif.series[self._series]
            self._mapped = spec.resolve(path, read.axes, read.shape)
            self.shape = canonical_shape(self._mapped, read.shape)
            self.dtype = np.dtype(read.dtype)
            page_shape = tuple(read.keyframe.shape)
            lead = tuple(read.shape[: len(read.shape) - len(page_shape)])
            self._by_pages = (
                tuple(read.shape[len(lead) :]) == page_shape
                and len(read.pages) == int(np.prod(lead, dtype=np.int64))
                and (len(read.pages) > 1 or read.keyframe.nbytes <= 64 * 2**20)
            )
            self._lead, self._page_shape = lead, page_shape
            self._array = None if self._by_pages else zarr.open_array(self._tif.aszarr(series=self._series, level=0), mode="r")
            pixels = _ome_pixels(self._tif, self._series)  # the OME XML parsed once for every field read from it
            spacing, unit = _physical_size(self._tif, self._series, pixels)
        except InputError:
            self.close()
            raise
        except Exception as err:
            self.close()
            raise InputError(f"{path}: not a readable TIFF ({type(err).__name__}: {err})") from err
        self.meta = Metadata(spacing=spacing, unit=unit, axes=self._mapped, time_step=_time_step(self._tif, pixels),
                             channel_names=_channel_names(pixels))

    def read(self, t: int, window: Window) -> np.ndarray:
        index, kept = file_index(self._mapped, t, window)
        try:
            block = self._read_pages(index) if self._by_pages else np.asarray(self._array[index])
        except Exception as err:
            raise InputError(f"{self.path}: TIFF data cannot be read ({type(err).__name__}: {err})") from err
        return to_canonical(block, kept)

    def _read_pages(self, index: tuple) -> np.ndarray:
        """Read only the pages ``index`` touches, then cut the window inside them."""
        n_lead = len(self._lead)
        pages = np.arange(int(np.prod(self._lead, dtype=np.int64))).reshape(self._lead)[index[:n_lead]]
        flat = [int(p) for p in np.ravel(pages)]
        data = self._tif.asarray(key=flat, series=self._series, maxworkers=1) if flat else None
        if data is None:
            return np.zeros(np.shape(pages) + self._page_shape, self.dtype)[(...,) + index[n_lead:]]
        data = data.reshape(np.shape(pages) + self._page_shape)
        return data[(Ellipsis,) + tuple(index[n_lead:])]

    def close(self) -> None:
        tif = getattr(self, "_tif", None)
        if tif is not None:
            tif.close()


def _check_whole(tif, path: Path) -> None:
    """Refuse a file cut short after a page: its last page points to a next one past the file's
    end (a copy or a write that stopped). tifffile reads such a file as the pages before the cut,
    a time-lapse as its first frame alone, saying so only in its log."""
    import struct

    form, handle = tif.tiff, tif.filehandle
    pages = tif.pages
    last = pages[len(pages) - 1]
    handle.seek(last.offset)
    tags = struct.unpack(form.tagnoformat, handle.read(form.tagnosize))[0]
    handle.seek(last.offset + form.tagnosize + tags * form.tagsize)
    raw = handle.read(form.offsetsize)
    following = struct.unpack(form.offsetformat, raw)[0] if len(raw) == form.offsetsize else None
    if following is None or following >= handle.size:
        raise InputError(f"{path}: cut short: after its {len(pages)} page(s) the file points to another past its end "
                         f"({handle.size} bytes); copy or write it again")


#: Kinds of tifffile series whose several series are several images (positions, scenes or fields
#: written to one file: OME-TIFF's ``Image`` elements, tifffile's own shaped series). A slide
#: scanner's file (SVS, NDPI, ...) also holds several series, but its others are a thumbnail, a
#: label and a macro photograph of the slide, not images to segment.
IMAGE_SERIES_KINDS = ("ome", "shaped")


def image_series(path: Path) -> int:
    """How many images ``path`` holds as separate series (:data:`IMAGE_SERIES_KINDS`): 1 for a
    TIFF of one series, of another kind, or one that does not open (it fails when read)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not (tif.is_ome or tif.is_shaped):
                return 1
            series = tif.series
            return len(series) if all(s.kind in IMAGE_SERIES_KINDS for s in series) else 1
    except Exception:  # tifffile raises many types for damaged files; reading it says which
        return 1


@functools.lru_cache(maxsize=256)
def _left_out(path: str, shapes: tuple[tuple[int, ...], ...]) -> None:
    """Say once per file that only its first series is read (a slide scanner's label and macro
    images; several positions written to one OME-TIFF, read as a catalog's image: ``series:``
    names another, and ``segpipe segment`` reads each as an input, :func:`image_series`)."""
    others = ", ".join("x".join(map(str, shape)) for shape in shapes[1:4]) + (", ..." if len(shapes) > 4 else "")
    log.warning("%s: holds %d image series; segpipe reads the first (%s) and leaves out the other %d (%s); "
                "a catalog entry's series: names another", path, len(shapes), "x".join(map(str, shapes[0])), len(shapes) - 1, others)


def _physical_size(tif, series: int, pixels: dict | None) -> tuple[tuple[float | None, float | None, float | None], str | None]:
    """``(z, y, x)`` pixel size and unit of image series ``series`` from OME (``pixels``: its
    :func:`_ome_pixels`), ImageJ or the resolution tags."""
    if pixels is not None:
        found = _ome_size(pixels, tif.filehandle.path)
        if found is not None:
            return found
    page = tif.series[series].keyframe if series else tif.pages.first
    ij = tif.imagej_metadata or {}
    if str(ij.get("unit", "")).strip().lower() in ("pixel", "pixels"):  # ImageJ's word for uncalibrated
        return (None, None, None), None
    if ij and unknown_unit(ij.get("unit")):
        _say_unknown_unit(tif.filehandle.path, ij.get("unit"))
        return (None, None, None), None
    unit = normalize_unit(ij.get("unit")) if ij else None
    z = float(ij["spacing"]) if "spacing" in ij else None
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return (z, None, None), unit
    x_res, y_res = tags["XResolution"].value, tags["YResolution"].value
    if not (x_res[0] and y_res[0]) or (x_res == (1, 1) and y_res == (1, 1) and unit is None):  # 1 per unit: calibrated only with a unit
        return (z, None, None), unit
    res_unit = tags["ResolutionUnit"].value if "ResolutionUnit" in tags else 2
    scale = 1.0
    if not ij:
        if res_unit == 3:  # centimeter
            scale, unit = 1e4, "micrometer"
        else:  # inches (a print resolution) or no unit: not a physical pixel size
            return (None, None, None), None
    y = scale * y_res[1] / y_res[0]
    x = scale * x_res[1] / x_res[0]
    return (z, y, x), unit


#: Seconds per time unit, as OME (``TimeIncrementUnit``) and ImageJ (``tunit``) write them.
SECONDS = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ds": 0.1, "cs": 1e-2, "ms": 1e-3, "msec": 1e-3,
           "millisecond": 1e-3, "milliseconds": 1e-3, "\u00b5s": 1e-6, "\u03bcs": 1e-6, "us": 1e-6, "usec": 1e-6,
           "microsecond": 1e-6, "microseconds": 1e-6, "ns": 1e-9, "nanosecond": 1e-9, "nanoseconds": 1e-9,
           "min": 60.0, "minute": 60.0, "minutes": 60.0, "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0,
           "d": 86400.0, "day": 86400.0, "days": 86400.0}


def _ome_pixels(tif, series: int = 0) -> dict | None:
    """The ``Pixels`` of the OME ``Image`` of ``series`` (tifffile makes one series per ``Image``, in
    order), parsed from the file's OME XML; ``None`` for a file without (or with unreadable) OME."""
    import tifffile

    if not tif.is_ome or not tif.ome_metadata:
        return None
    try:
        ome = tifffile.xml2dict(tif.ome_metadata)["OME"]
        images = ome["Image"] if isinstance(ome["Image"], list) else [ome["Image"]]
        pixels = images[series]["Pixels"]
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return pixels if isinstance(pixels, dict) else None


def _channel_names(pixels: dict | None) -> tuple[str | None, ...] | None:
    """The OME ``Image``'s channel names, in order (``None`` for a channel without one); ``None``
    where the file names none."""
    channels = pixels.get("Channel") if pixels is not None else None
    channels = channels if isinstance(channels, list) else [channels] if isinstance(channels, dict) else []
    names = tuple(str(c["Name"]) if isinstance(c, dict) and c.get("Name") is not None else None for c in channels)
    return names if any(names) else None


def _time_step(tif, pixels: dict | None) -> float | None:
    """Seconds between time points: the OME ``Image``'s ``TimeIncrement`` (``pixels``), else
    ImageJ's ``finterval``; ``None`` where the file gives none, or in a unit not in :data:`SECONDS`."""
    step, unit = None, "s"
    try:
        if pixels is not None:
            step, unit = pixels.get("TimeIncrement"), str(pixels.get("TimeIncrementUnit", "s"))
        elif tif.imagej_metadata:
            step, unit = tif.imagej_metadata.get("finterval"), str(tif.imagej_metadata.get("tunit") or "s")
        step = float(step) if step is not None else None
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    factor = SECONDS.get(unit.strip().lower())
    return step * factor if step and step > 0 and factor else None


def _ome_size(pixels: dict, path) -> tuple[tuple[float | None, float | None, float | None], str | None] | None:
    """The pixel size and unit an OME ``Pixels`` element gives; ``None`` where it gives none. One of
    ``PhysicalSizeY`` and ``PhysicalSizeX`` alone is taken for both (square pixels), with a warning:
    left unknown, the other axis took a default and the pixel a made-up shape."""
    if (pixels.get("PhysicalSizeY") is None) != (pixels.get("PhysicalSizeX") is None):
        given, missing = ("X", "Y") if pixels.get("PhysicalSizeY") is None else ("Y", "X")
        log.warning("%s: its OME metadata gives PhysicalSize%s alone; taken for %s too (square pixels)", path, given, missing)
        pixels = {**pixels, f"PhysicalSize{missing}": pixels[f"PhysicalSize{given}"]}
        if f"PhysicalSize{given}Unit" in pixels:
            pixels[f"PhysicalSize{missing}Unit"] = pixels[f"PhysicalSize{given}Unit"]
    sizes = tuple(pixels.get(f"PhysicalSize{a}") for a in "ZYX")
    if all(s is None for s in sizes):
        return None
    given = {a: pixels.get(f"PhysicalSize{a}Unit", "µm") for a, s in zip("ZYX", sizes) if s is not None}
    strange = [u for u in given.values() if unknown_unit(u)]
    if strange:
        _say_unknown_unit(path, strange[0])
        return (None, None, None), None
    units = {normalize_unit(u) for u in given.values()}
    if len(units) == 1:
        return tuple(float(s) if s is not None else None for s in sizes), units.pop()  # type: ignore[return-value]
    # axes in different units (nm in x and y, µm in z): each in micrometres
    return tuple(None if s is None else float(s) * length_factor(given[a], "micrometer") for a, s in zip("ZYX", sizes)), "micrometer"  # type: ignore[return-value]


def _say_unknown_unit(path, unit) -> None:
    """A file's pixel size in a unit segpipe does not know is no pixel size: said, and taken as not given."""
    log.warning("%s: its pixel size is in %r, a unit segpipe does not know; taken as not given (set spacing: and "
                "unit: in the catalog entry, or --spacing for segpipe segment)", path, str(unit))
