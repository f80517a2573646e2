"""Map a file's own axes (tifffile letters, NIfTI dimensions) onto segpipe's ``TCZYX`` order.

Every reader presents its data as five canonical axes: ``T`` (frames, each ingested as its
own image), ``C`` (channels), ``Z``, ``Y``, ``X``. Axes the file does not have get size 1.
A file axis whose meaning is unknown (tifffile's ``Q`` or ``I``) is dropped when it has size 1,
taken as ``Z`` for 3D datasets, and otherwise refused with a hint to set ``axes:`` in the
catalog, since guessing between frames, planes and channels silently corrupts a dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from segpipe.errors import InputError

CANONICAL = "TCZYX"
KNOWN = {"T": "T", "C": "C", "S": "C", "Z": "Z", "Y": "Y", "X": "X"}


@dataclass(frozen=True)
class AxesSpec:
    """How to read a file's axes: the catalog's ``axes`` and ``channel_axis``, and the fill rule."""

    override: str | None = None
    fill: str = ""
    channel_axis: int | None = None

    def resolve(self, path: Path, letters: str, shape: tuple[int, ...]) -> str:
        """See :func:`resolve_axes`."""
        return resolve_axes(
            path, letters, shape, override=self.override, fill=self.fill, channel_axis=self.channel_axis
        )


def resolve_axes(
    path: Path,
    letters: str,
    shape: tuple[int, ...],
    *,
    override: str | None = None,
    fill: str = "",
    channel_axis: int | None = None,
) -> str:
    """Canonical letter for each file axis, ``"-"`` for a dropped axis of size 1.

    Args:
        path: The file, for messages.
        letters: The file's own axis letters (one per axis of ``shape``).
        shape: The file's array shape.
        override: Letters from the catalog (``axes:``), replacing ``letters`` entirely.
        fill: Canonical letters to give unknown axes larger than 1, innermost first.
        channel_axis: Index of the file axis holding channels (the catalog's ``channel_axis``).

    Returns:
        A string as long as ``shape``: one of ``TCZYX`` or ``-`` per file axis.

    Raises:
        InputError: The override does not fit the file, two axes claim the same role, or an
            unknown axis is left over.
    """
    if override is not None:
        override = override.upper()
        if len(override) != len(shape):
            raise InputError(
                f"{path}: axes {override!r} (the catalog's axes:, or --axes) name {len(override)} axes, "
                f"the file has {len(shape)} (shape {shape}, axes {letters!r}); they apply to every file, so give files "
                "of other axes an entry (or a segment run) of their own"
            )
        bad = sorted(set(override) - set(KNOWN))
        if bad:
            raise InputError(f"{path}: axes {override!r} uses {bad}; allowed letters are T, C (or S), Z, Y, X")
        letters = override
    if channel_axis is not None:
        if not -len(shape) <= channel_axis < len(shape):
            raise InputError(f"{path}: channel_axis {channel_axis} but the file has {len(shape)} axes {shape}")
        chars = list(letters)
        chars[channel_axis] = "C"
        letters = "".join(chars)
    mapped = [KNOWN.get(letter, "?") for letter in letters]
    # Merge channel-like axes: RGB samples of a single-channel image, or the other way round.
    channel_like = [i for i, m in enumerate(mapped) if m == "C"]
    if len(channel_like) > 1:
        wide = [i for i in channel_like if shape[i] > 1]
        if len(wide) > 1:
            raise InputError(f"{path}: both channels and samples are larger than 1 (shape {shape}, axes {letters!r})")
        keep = wide[0] if wide else channel_like[0]
        for i in channel_like:
            if i != keep:
                mapped[i] = "-"
    unknown = [i for i, m in enumerate(mapped) if m == "?"]
    for i in unknown:
        if shape[i] == 1:
            mapped[i] = "-"
    pending = [i for i in reversed(unknown) if mapped[i] == "?"]
    available = [letter for letter in fill if letter not in mapped]
    for i, letter in zip(pending, available):
        mapped[i] = letter
    leftover = [i for i in pending if mapped[i] == "?"]
    if leftover:
        what = ", ".join(f"axis {i} ({letters[i]!r}, size {shape[i]})" for i in leftover)
        raise InputError(
            f"{path}: cannot tell what {what} of shape {shape} is; set axes: in the catalog entry "
            f"(segpipe segment: --axes), e.g. axes: {_example(shape)} (T frames, C channels, Z planes)"
        )
    seen = [m for m in mapped if m != "-"]
    dupes = sorted({m for m in seen if seen.count(m) > 1})
    if dupes:
        raise InputError(f"{path}: more than one axis is {dupes} (shape {shape}, axes {letters!r})")
    for need in "YX":
        if need not in mapped:
            raise InputError(f"{path}: no {need} axis (shape {shape}, axes {letters!r})")
    return "".join(mapped)


def canonical_shape(mapped: str, shape: tuple[int, ...]) -> tuple[int, int, int, int, int]:
    """``(T, C, Z, Y, X)`` sizes from the resolved letters, 1 for absent axes."""
    sizes = dict.fromkeys(CANONICAL, 1)
    for letter, size in zip(mapped, shape):
        if letter != "-":
            sizes[letter] = int(size)
    return tuple(sizes[a] for a in CANONICAL)  # type: ignore[return-value]


def _example(shape: tuple[int, ...]) -> str:
    """Axis letters to suggest for ``shape``; channels last first where its last axis is a few
    values beside large ones (an RGB-like image saved without saying so)."""
    n = len(shape)
    if n == 3 and shape[-1] <= 4 < min(shape[:-1]):
        return "YXC (channels last, as the shape suggests) or ZYX or TYX or CYX"
    return {2: "YX", 3: "ZYX or TYX or CYX", 4: "TZYX or ZCYX", 5: "TZCYX"}.get(n, "TZCYX")
