"""OME-NGFF 0.5 attributes of segpipe's images and label images, as plain dicts.

An image's ``multiscales`` list one dataset per pyramid level (``s0``, ``s1``, ...), each with
its ``scale`` (the pixel size times the level's factor) and, where it is not zero, its
``translation``: where the level's first pixel centre lies in the full image's frame. That is
the region's origin for an image cut from a larger one, plus, for averaged levels, the shift of
a block mean's centre (half a pixel of the full resolution less than half a block). Label
levels pick voxels, so they are not shifted. ``omero`` names the channels (viewers show the
names as layer names) and gives their display range; ``image-label`` gives label colours
and the class of each label value.
"""

from __future__ import annotations

from collections.abc import Sequence

VERSION = "0.5"

#: Colours of classes 1, 2, ... in label maps (class 0, the background, is transparent).
CLASS_COLOURS = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
]


def level_path(level: int) -> str:
    """The array name of pyramid level ``level``."""
    return f"s{level}"


def axes(ndim: int, *, channels: bool, frames: int = 0, unit: str | None = None) -> list[dict]:
    """NGFF axes: ``t`` per frame axis, ``c`` if ``channels``, then ``([z,] y, x)`` in ``unit``."""
    space = [{"name": n, "type": "space"} | ({"unit": unit} if unit else {}) for n in "zyx"[3 - ndim :]]
    return [{"name": "t", "type": "time"}] * frames + ([{"name": "c", "type": "channel"}] if channels else []) + space


def datasets(
    spacing: Sequence[float],
    factors: Sequence[Sequence[int]],
    *,
    lead: int,
    origin: Sequence[float] | None = None,
    averaged: bool,
) -> list[dict]:
    """The ``datasets`` of a multiscale with levels of ``factors``; ``lead`` non-spatial axes first."""
    origin = list(origin) if origin is not None else [0.0] * len(spacing)
    out = []
    for level, factor in enumerate(factors):
        scale = [float(s) * f for s, f in zip(spacing, factor)]
        shift = [o + (s * (f - 1) / 2 if averaged else 0.0) for o, s, f in zip(origin, spacing, factor)]
        transforms = [{"type": "scale", "scale": [1.0] * lead + scale}]
        if any(shift):
            transforms.append({"type": "translation", "translation": [0.0] * lead + shift})
        out.append({"path": level_path(level), "coordinateTransformations": transforms})
    return out


def multiscale_attrs(
    *,
    name: str,
    ndim: int,
    spacing: Sequence[float],
    unit: str,
    factors: Sequence[Sequence[int]],
    channels: bool,
    frames: int = 0,
    origin: Sequence[float] | None = None,
    averaged: bool,
) -> dict:
    """``{"ome": {...}}`` of a multiscale image (``averaged``: levels are block means, else picked voxels)."""
    lead = frames + int(channels)
    multiscale = {
        "name": name,
        "axes": axes(ndim, channels=channels, frames=frames, unit=unit),
        "datasets": datasets(spacing, factors, lead=lead, origin=origin, averaged=averaged),
    }
    return {"ome": {"version": VERSION, "multiscales": [multiscale]}}


def omero(labels: Sequence[str], windows: Sequence[tuple[float, float]], colours: Sequence[str] | None = None) -> dict:
    """``omero`` channel metadata: each channel's name, colour (hex RGB) and display range."""
    colours = colours or (["FFFFFF"] if len(labels) == 1 else _channel_colours(len(labels)))
    return {
        "channels": [
            {
                "label": label,
                "color": colour,
                "active": True,
                "window": {"min": float(low), "max": float(high), "start": float(low), "end": float(high)},
            }
            for label, (low, high), colour in zip(labels, windows, colours)
        ],
        "rdefs": {"model": "color"},
    }


def _channel_colours(n: int) -> list[str]:
    base = ["FF00FF", "00FF00", "00FFFF", "FFFF00", "FF0000", "0000FF", "FFFFFF"]
    return [base[i % len(base)] for i in range(n)]


def labels_group_attrs(names: Sequence[str]) -> dict:
    """``{"ome": {...}}`` of an image's ``labels`` group listing ``names``."""
    return {"ome": {"version": VERSION, "labels": list(names)}}


def image_label(classes: Sequence[str] | None, *, instances: bool, source: str = "../../") -> dict:
    """``image-label`` of a label map: a class map gets a colour and the class name per value;
    an object map only its source (viewers colour objects themselves; its values are not classes)."""
    label: dict = {"version": VERSION, "source": {"image": source}}
    if classes is not None and not instances:
        label["colors"] = [{"label-value": 0, "rgba": [0, 0, 0, 0]}] + [
            {"label-value": value, "rgba": [*CLASS_COLOURS[(value - 1) % len(CLASS_COLOURS)], 255]}
            for value in range(1, len(classes))
        ]
        label["properties"] = [{"label-value": value, "class": name} for value, name in enumerate(classes)]
    return label
