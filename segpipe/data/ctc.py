"""Cell Tracking Challenge sequence folders as catalog records.

Layout (https://celltrackingchallenge.net, "Datasets")::

    01/t000.tif t001.tif ...          one frame per file, 2D or 3D
    01_GT/SEG/man_seg005.tif ...      ground truth for some frames only (same shape as the frame)
    01_GT/SEG/man_seg_000_012.tif     3D sequences: ground truth of one plane (frame 0, z 12)

Every frame becomes a record; frames without ground truth are predicted (the export then has
every frame, as the CTC tools expect) but neither trained on nor scored. A per-plane annotation
becomes a 2D record cutting that plane from its frame, so such datasets are 2D (``ndim: 2``).
A sequence with both kinds uses the kind its ``ndim`` takes and says how many of the other kind
it leaves out: whole frames in a 3D dataset (the frames annotated by planes alone are then
predicted, not scored), planes in a 2D one.

Sparse ground truth: the CTC's segmentation truth may leave cells out (gold truth annotates a
selection of cells in a selection of frames), and the format has no mark for what is left out:
the CTC's own SEG measure only ever looks at annotated cells, so extra predicted cells cost
nothing there, while a DET or a training on those frames would take unannotated cells for
background. The catalog's ``ignore_masks`` names a folder of masks beside the ground truth (a
template such as ``{seq}_GT/IGNORE``), each named like the annotation it completes
(``man_seg005.tif``, ``man_seg_000_012.tif``), nonzero where cells were left out; or
``ignore_label`` names a value the annotations use for such areas.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from pathlib import Path

from segpipe.data.records import ImageRecord
from segpipe.errors import CatalogError, InputError

FRAME = re.compile(r"^t(\d+)\.tiff?$")
FULL_GT = re.compile(r"^man_seg(\d+)\.tiff?$")
PLANE_GT = re.compile(r"^man_seg_(\d+)_(\d+)\.tiff?$")

log = logging.getLogger(__name__)


def ctc_records(
    sequences: list[Path], *, template: str, ndim: int, where: str, required: bool = False, ignore_template: str | None = None
) -> list[ImageRecord]:
    """Records of the frames (or annotated planes) of ``sequences``, split unassigned.

    Every frame becomes a record, with its ``man_segT.tif`` as labels where there is one and
    without labels (predicted, not scored) where there is none; a sequence without a
    ground-truth folder has no labels at all. Per-plane annotations (``man_seg_T_Z.tif``) make
    2D records of the annotated planes only.

    Args:
        sequences: Sequence folders (``.../01``).
        template: Ground-truth folder relative to each sequence's parent, ``{seq}`` replaced by
            the folder name (``{seq}_GT/SEG`` by default; ``{seq}_ST/SEG`` for silver truth).
        ndim: The dataset's spatial dimensions.
        where: Catalog and entry, for messages.
        required: The catalog named the ground-truth folder: a sequence without it is an error.
        ignore_template: Folder of ignore masks relative to each sequence's parent, ``{seq}``
            replaced; each mask is named like the annotation it belongs to. A sequence without
            the folder, or an annotation without a mask there, is annotated throughout; but the
            folder of at least one sequence must be there.

    Raises:
        CatalogError: A sequence is not a folder or has no frames, a named ground-truth folder is
            missing or holds no annotations, an annotation has no frame, a sequence annotated
            by planes alone is in a ``ndim: 3`` dataset, an ignore mask is named like no annotation, or
            no sequence has an ignore folder.
    """
    records: list[ImageRecord] = []
    names: set[str] = set()
    found_masks = False
    for seq in sequences:
        if not seq.is_dir():
            raise CatalogError(f"{where}: {seq} is not a sequence folder (format: ctc expects folders like 01/)")
        if seq.name in names:
            raise CatalogError(f"{where}: two sequence folders are named {seq.name!r}")
        names.add(seq.name)
        frames = _numbered(seq, FRAME)
        if not frames:
            raise CatalogError(f"{where}: {seq} holds no frame files named t000.tif, t001.tif, ...")
        if gap := missing_frame(frames, seq):
            raise CatalogError(f"{where}: {gap}")
        gt = seq.parent / template.format(seq=seq.name)
        if not gt.is_dir():
            if required:
                raise CatalogError(f"{where}: no ground-truth folder {gt} for sequence {seq}")
            gt = None
        width = max(3, len(str(max(frames))))
        full, planes = _annotations(gt, frames, seq, width, where) if gt is not None else ({}, [])
        if planes and ndim != 2:
            if not full:
                raise CatalogError(
                    f"{where}: {planes[0][2]} annotates one plane of a 3D frame; per-plane ground truth "
                    "is ingested as 2D images, set ndim: 2"
                )
            log.warning("%s: %s holds whole-frame and per-plane annotations; ndim: 3 uses the whole-frame ones (%d) "
                        "and leaves out the per-plane ones (%d; ndim: 2 uses those)", where, gt, len(full), len(planes))
            unused, planes = {path.name for _, _, path in planes}, []
        elif planes and full:
            log.warning("%s: %s holds whole-frame and per-plane annotations; ndim: 2 uses the per-plane ones (%d) "
                        "and leaves out the whole-frame ones (%d; ndim: 3 uses those)", where, gt, len(planes), len(full))
            unused, full = {path.name for path in full.values()}, {}
        else:
            unused = set()
        made = [
            ImageRecord(f"{seq.name}-t{t:0{width}d}-z{z:03d}", frames[t], path, "train", plane=z, frame=t) for t, z, path in planes
        ] + [
            ImageRecord(f"{seq.name}-t{t:0{width}d}", path, full.get(t), "train", frame=t)
            for t, path in frames.items() if not planes or t in full
        ]
        if ignore_template is not None:
            masks = seq.parent / ignore_template.format(seq=seq.name)
            found_masks |= masks.is_dir()
            made = _with_ignore_masks(made, masks, where, unused=unused)
        records += made
    if ignore_template is not None and sequences and not found_masks:  # a typo, not every sequence annotated throughout
        raise CatalogError(f"{where}: ignore_masks: {ignore_template!r} names no folder beside any sequence "
                           f"(looked for {sequences[0].parent / ignore_template.format(seq=sequences[0].name)})")
    return records


def _with_ignore_masks(records: list[ImageRecord], folder: Path, where: str, *, unused: set[str]) -> list[ImageRecord]:
    """``records`` with the masks of ``folder`` named like their annotations (none: annotated
    throughout); masks of the ``unused`` annotations (left out) are left out too."""
    if not folder.is_dir():
        return records
    annotated = {r.labels.name for r in records if r.labels is not None}
    masks = {}
    for path in sorted(folder.iterdir()):
        if not (FULL_GT.match(path.name) or PLANE_GT.match(path.name)) or path.name in unused:
            continue
        if path.name not in annotated:
            raise CatalogError(f"{where}: ignore mask {path} is named like no annotation ({', '.join(sorted(annotated))})")
        masks[path.name] = path.absolute()
    return [replace(r, ignore=masks.get(r.labels.name)) if r.labels is not None else r for r in records]


def _annotations(gt: Path, frames: dict[int, Path], seq: Path, width: int, where: str):
    """Whole-frame annotations ``{t: path}`` and per-plane ones ``[(t, z, path)]`` of one sequence."""
    full, planes = {}, []
    for path in sorted(gt.iterdir()):
        whole, plane = FULL_GT.match(path.name), PLANE_GT.match(path.name)
        if not (whole or plane):
            continue
        t = int((whole or plane).group(1))
        if t not in frames:
            raise CatalogError(f"{where}: {path} annotates frame {t}, but {seq} has no t{t:0{width}d}.tif")
        if plane:
            planes.append((t, int(plane.group(2)), path))
        else:
            full[t] = path
    if not full and not planes:
        raise CatalogError(f"{where}: {gt} holds no man_seg*.tif annotations")
    return full, planes


def sequence_frames(folder: Path) -> dict[int, Path]:
    """The frames ``t000.tif``, ``t001.tif``, ... of a sequence folder, by number.

    Raises:
        InputError: A frame is missing between the first and the last.
    """
    frames = _numbered(folder, FRAME)
    if gap := missing_frame(frames, folder):
        raise InputError(gap)
    return frames


def missing_frame(frames: dict[int, Path], seq: Path) -> str | None:
    """What is wrong with a sequence whose frame numbers have a gap (the first missing one), or
    ``None``: the challenge numbers every frame, and a result without one fails its checks."""
    if not frames:
        return None
    numbers = sorted(frames)
    missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
    if not missing:
        return None
    width = max(3, len(str(numbers[-1])))
    more = f" ({len(missing)} frames missing in all)" if len(missing) > 1 else ""
    return (f"{seq}: frame t{missing[0]:0{width}d}.tif is missing between t{numbers[0]:0{width}d} and "
            f"t{numbers[-1]:0{width}d}{more}; a Cell Tracking Challenge sequence holds every frame "
            "(its result would fail the challenge's checks)")


def _numbered(folder: Path, pattern: re.Pattern) -> dict[int, Path]:
    out = {}
    for path in folder.iterdir():
        match = pattern.match(path.name)
        if match:
            out[int(match.group(1))] = path.absolute()
    return dict(sorted(out.items()))
