"""Cell Tracking Challenge sequence folders as catalog records.

Layout (https://celltrackingchallenge.net, "Datasets")::

    01/t000.tif t001.tif ...          one frame per file, 2D or 3D
    01_GT/SEG/man_seg005.tif ...      ground truth for some frames only (same shape as the frame)
    01_GT/SEG/man_seg_000_012.tif     3D sequences: ground truth of one plane (frame 0, z 12)

Only frames with ground truth become records (a frame without labels can be neither trained
on nor scored). A per-plane annotation becomes a 2D record cutting that plane from its frame,
so such datasets are 2D (``ndim: 2``).
"""

from __future__ import annotations

import re
from pathlib import Path

from segpipe.data.records import ImageRecord
from segpipe.errors import CatalogError

FRAME = re.compile(r"^t(\d+)\.tiff?$")
FULL_GT = re.compile(r"^man_seg(\d+)\.tiff?$")
PLANE_GT = re.compile(r"^man_seg_(\d+)_(\d+)\.tiff?$")


def ctc_records(sequences: list[Path], *, template: str, ndim: int, where: str) -> list[ImageRecord]:
    """Records of every annotated frame (or plane) of ``sequences``, split unassigned (``train``).

    Args:
        sequences: Sequence folders (``.../01``).
        template: Ground-truth folder relative to each sequence's parent, ``{seq}`` replaced by
            the folder name (``{seq}_GT/SEG`` by default; ``{seq}_ST/SEG`` for silver truth).
        ndim: The dataset's spatial dimensions.
        where: Catalog and entry, for messages.

    Raises:
        CatalogError: A sequence is not a folder, has no ground truth folder or annotations, an
            annotation has no frame, or per-plane annotations are used with ``ndim: 3``.
    """
    records: list[ImageRecord] = []
    names: set[str] = set()
    for seq in sequences:
        if not seq.is_dir():
            raise CatalogError(f"{where}: {seq} is not a sequence folder (format: ctc expects folders like 01/)")
        if seq.name in names:
            raise CatalogError(f"{where}: two sequence folders are named {seq.name!r}")
        names.add(seq.name)
        frames = _numbered(seq, FRAME)
        if not frames:
            raise CatalogError(f"{where}: {seq} holds no frame files named t000.tif, t001.tif, ...")
        gt = seq.parent / template.format(seq=seq.name)
        if not gt.is_dir():
            raise CatalogError(f"{where}: no ground-truth folder {gt} for sequence {seq}")
        width = max(3, len(str(max(frames))))
        found = 0
        for path in sorted(gt.iterdir()):
            full, plane = FULL_GT.match(path.name), PLANE_GT.match(path.name)
            if not (full or plane):
                continue
            t = int((full or plane).group(1))
            if t not in frames:
                raise CatalogError(f"{where}: {path} annotates frame {t}, but {seq} has no t{t:0{width}d}.tif")
            name = f"{seq.name}-t{t:0{width}d}"
            if plane:
                if ndim != 2:
                    raise CatalogError(
                        f"{where}: {path} annotates one plane of a 3D frame; per-plane ground truth "
                        "is ingested as 2D images, set ndim: 2"
                    )
                z = int(plane.group(2))
                records.append(ImageRecord(f"{name}-z{z:03d}", frames[t], path, "train", plane=z))
            else:
                records.append(ImageRecord(name, frames[t], path, "train"))
            found += 1
        if not found:
            raise CatalogError(f"{where}: {gt} holds no man_seg*.tif annotations")
    return records


def _numbered(folder: Path, pattern: re.Pattern) -> dict[int, Path]:
    out = {}
    for path in folder.iterdir():
        match = pattern.match(path.name)
        if match:
            out[int(match.group(1))] = path.absolute()
    return dict(sorted(out.items()))
