"""Images named on the command line (files, folders, globs), as datasets without ground truth.

``segpipe segment`` takes any mix of:

- image files: TIFF/OME-TIFF, NIfTI, PNG; an OME-TIFF of several image series (positions,
  scenes) gives one input per series, named ``STEM_s0``, ``STEM_s1``, ...;
- OME-Zarr images (a folder holding a zarr group);
- Cell Tracking Challenge sequences (a folder of ``t000.tif``, ``t001.tif``, ...);
- folders of such files (their images, not their subfolders);
- globs of any of these (quoted, or expanded by the shell).

Each input becomes its own one-entry dataset (:func:`input_dataset`), so it is ingested,
cached and segmented on its own, and one unreadable file fails alone.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from segpipe.data.catalog import IMAGE_SUFFIXES, Dataset, DatasetEntry, _stem
from segpipe.data.ctc import FRAME, sequence_frames
from segpipe.data.ingest.fingerprint import file_digest, source_files, source_key, stat_of
from segpipe.data.readers.omezarr import is_ome_zarr
from segpipe.data.readers.tiff import image_series
from segpipe.data.records import ImageRecord
from segpipe.errors import InputError, NoInputs

log = logging.getLogger(__name__)

InputKind = Literal["tiff", "nifti", "png", "omezarr", "ctc"]


@dataclass(frozen=True)
class Input:
    """One input: a file, an OME-Zarr image or a CTC sequence.

    Attributes:
        name: Unique among the run's inputs (the file stem; the parent folder's name is
            prefixed when two inputs share a stem, and the file's kind added when they share
            the folder too: ``day1_x``, ``day1_x_tif``).
        path: Absolute path.
        kind: What it is, which decides the label files written for it.
        channels: The channels to read when chosen for this input alone (a grey image saved in
            colour reads its first, a composite its channels that are not flat); ``None``: as the run says.
        series: The image series of a TIFF of several (:func:`~segpipe.data.readers.tiff.image_series`)
            this input is; ``None`` for a file of one image.
    """

    name: str
    path: Path
    kind: InputKind
    channels: tuple[int, ...] | None = None
    series: int | None = None

    @property
    def where(self) -> str:
        """The input as tables and messages name it: its path, and its series if it is one."""
        return _where(self.path, self.series)


#: The files an earlier run's input of a name was made from (its store's ``sources``), or ``None``.
Recorded = Callable[[str], Mapping[str, Mapping] | None]


def find_inputs(
    patterns: list[str], *, base: Path | None = None, given: Mapping[str, str] | None = None, skip: Sequence[Path] = (),
    recorded: Recorded | None = None,
) -> list[Input]:
    """The inputs ``patterns`` name, in order, each once.

    ``given``: names earlier runs into the same output gave, by :attr:`Input.where`; those inputs
    keep them, and new inputs are named apart from all of them (an ``a.png`` arriving beside a
    segmented ``a.tif`` does not rename it). With ``recorded`` (what each name's input was made
    from), an input found at a new place whose old file is gone and whose content is that file's
    (a folder moved or renamed) keeps the old name (:func:`_moved`).

    Files a glob matches that are not images (notes, a copy tool's ``.part`` file) are passed
    over, as a folder's are; a file named on its own must be an image. So is anything inside the
    folders ``skip`` (the run's own outputs: a glob such as ``data/**/*.tif`` over a folder that
    holds the output would take the labels of the last run as new images).

    Raises:
        NoInputs: A pattern matches nothing, or nothing named is an image.
        InputError: A pattern is empty, or names a file of an unknown format.
    """
    base = base or Path.cwd()
    found: list[Path] = []
    passed_over: list[Path] = []
    skip = [Path(os.path.normpath(Path(folder).absolute())) for folder in skip]
    for pattern in patterns:
        if not pattern.strip():
            raise InputError(f"{pattern!r}: an empty input path (an unset shell variable?); name files, folders or globs")
        matches = sorted(glob.glob(str(base / pattern), recursive=True)) if glob.has_magic(pattern) else [str(base / pattern)]
        matches = [m for m in matches if Path(m).exists()]
        if not matches:
            missing = "the pattern matches no file or folder" if glob.has_magic(pattern) else "no such file or folder"
            raise NoInputs(f"{pattern}: {missing}")
        for match in map(Path, matches):
            path = Path(os.path.normpath(match.absolute()))  # one path per file: `../d/a.png` is `d/a.png`
            if _special(path):  # reading a pipe waits for a writer; /dev/zero never ends
                if not glob.has_magic(pattern):
                    raise InputError(f"{path}: not a file or folder (a pipe, socket or device); name image files")
                passed_over.append(path)
                continue
            if glob.has_magic(pattern) and path.is_file() and kind_of(path) is None:
                passed_over.append(path)
                continue
            found += _expand(path)
            if path.is_dir() and kind_of(path) is None:  # a folder's other files, said as a glob's are
                passed_over += sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and kind_of(p) is None)
    outputs = [path for path in found if _inside(path, skip)]
    if outputs:
        log.info("%d input(s) inside the output's own folders passed over (what segpipe wrote there): %s", len(outputs),
                 ", ".join(p.name for p in outputs[:5]) + (", ..." if len(outputs) > 5 else ""))
        found = [path for path in found if path not in outputs]
    passed_over = [path for path in passed_over if not _inside(path, skip)]
    lowered = {_lowered(path) for path in passed_over}
    hints = [(path, foreign_image(path)) for path in passed_over if not _second_of_pair(path, lowered)]
    foreign = [(path, hint) for path, hint in hints if hint is not None]
    plain = [path for path, hint in hints if hint is None]
    if foreign:
        log.warning("%d image(s) in a format segpipe does not read, passed over: %s", len(foreign),
                    "; ".join(f"{path} ({hint})" for path, hint in foreign[:3]) + ("; ..." if len(foreign) > 3 else ""))
    if plain:
        log.info("%d file(s) matched that are not images, passed over: %s", len(plain),
                 ", ".join(p.name for p in plain[:5]) + (", ..." if len(plain) > 5 else ""))
    unique = list(dict.fromkeys(found))
    if not unique:
        others = f"; {len(plain)} file(s) that are not images passed over ({plain[0].name}, ...)" if plain else ""
        others += (f"; {len(foreign)} image(s) in a format segpipe does not read ({foreign[0][0].name}: {foreign[0][1]})"
                   if foreign else "")
        others += f"; {len(outputs)} inside the output's own folders passed over" if outputs else ""
        raise NoInputs(f"{' '.join(patterns)}: no images found (TIFF, NIfTI, PNG, OME-Zarr or CTC sequences)"
                       f"{_deeper(patterns, base)}{others}")
    return _named({path: image_series(path) if kind_of(path) == "tiff" else 1 for path in unique}, given or {}, recorded)


def settled_inputs(items: list[Input], *, seconds: float, now: float | None = None) -> tuple[list[Input], list[Input]]:
    """``items`` split into those whose files have not changed for ``seconds``, and those changed
    since (a file still being copied in: a copy that fills a file of its full size, as SMB does,
    or one that grows). A folder input (a CTC sequence, an OME-Zarr image) counts its newest entry
    at any depth."""
    now = time.time() if now is None else now
    ready, waiting = [], []
    for item in items:
        (waiting if now - _changed(item.path) < seconds else ready).append(item)
    return ready, waiting


def _changed(path: Path) -> float:
    """When ``path``, or for a folder the newest file or folder anywhere in it (an OME-Zarr's chunks
    lie folders deep), last changed; 0 when it is gone."""
    try:
        newest = path.stat().st_mtime
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                for name in dirs + files:
                    newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
        return newest
    except OSError:
        return 0.0


def _deeper(patterns: list[str], base: Path) -> str:
    """Where a folder holds no images but its subfolders do: how to name them (folders are not searched
    below their own files, so a folder of dated runs is not taken whole by accident)."""
    for pattern in patterns:
        folder = base / pattern
        if glob.has_magic(pattern) or not folder.is_dir():
            continue
        if any(kind_of(p) is not None for p in folder.glob("*/*")):
            return (f"; folders are not searched below their own files, and {folder.name}'s subfolders hold images: "
                    f"name them, e.g. '{Path(pattern) / '*' / '*'}' (quoted)")
    return ""


def kind_of(path: Path) -> InputKind | None:
    """What ``path`` is as an input, or ``None`` when it is none of the known kinds."""
    if is_ome_zarr(path):
        return "omezarr"
    if path.is_dir():
        return "ctc" if any(FRAME.match(p.name) for p in path.iterdir()) else None
    name = path.name.lower()
    if name.endswith((".tif", ".tiff")):
        return "tiff"
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith(".png"):
        return "png"
    return None


#: Image formats segpipe does not read, by ending, with what to do.
_FOREIGN = {
    (".hdr", ".img", ".hdr.gz", ".img.gz"): "an Analyze or NIfTI pair: save it as one .nii.gz file (nibabel, fslchfiletype NIFTI_GZ)",
    (".jpg", ".jpeg", ".bmp", ".gif", ".webp"): "save it as PNG or TIFF",
    (".dcm", ".ima"): "DICOM: convert the series to NIfTI (dcm2niix)",
    (".czi", ".nd2", ".lif", ".oib", ".oif", ".vsi", ".ims", ".ndpi", ".svs"):
        "a vendor's format: convert it to OME-TIFF or OME-Zarr (bfconvert, bioformats2raw)",
}


def foreign_image(path: Path) -> str | None:
    """What to do with an image file of a format segpipe does not read; ``None`` for any other file."""
    name = path.name.lower()
    return next((hint for endings, hint in _FOREIGN.items() if name.endswith(endings)), None)


def _inside(path: Path, folders: Sequence[Path]) -> bool:
    return any(path.is_relative_to(folder) for folder in folders)


def _lowered(path: Path) -> str:
    return str(path.parent / path.name.lower())


def _second_of_pair(path: Path, lowered: set[str]) -> bool:
    """Whether ``path`` is the ``.img`` of an Analyze or NIfTI pair whose ``.hdr`` is among the files
    ``lowered`` (:func:`_lowered`) too: the pair is one image, said once."""
    name = path.name.lower()
    return any(name.endswith(image) and str(path.parent / (name[: -len(image)] + header)) in lowered
               for image, header in ((".img", ".hdr"), (".img.gz", ".hdr.gz")))


def _special(path: Path) -> bool:
    """Whether ``path`` (followed through links) is there but neither a file nor a folder: a pipe,
    a socket or a device."""
    return path.exists() and not path.is_file() and not path.is_dir()


def _expand(path: Path) -> list[Path]:
    kind = kind_of(path)
    if kind is not None:
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if not p.name.startswith(".") and not _special(p) and kind_of(p) is not None)
    hint = foreign_image(path)
    raise InputError(f"{path}: not an image segpipe reads (TIFF, NIfTI, PNG, an OME-Zarr folder or a CTC sequence folder)"
                     + (f"; {hint}" if hint else ""))


def _named(counts: dict[Path, int], given: Mapping[str, str], recorded: Recorded | None = None) -> list[Input]:
    """One input per path, or per series of a path of several (``counts``: the images each holds),
    named by its stem (and ``_sN``), with the folder's name where two stems meet; an input in
    ``given`` keeps the name given there, and one moved keeps the name of its old place (``recorded``)."""
    found = [(path, series if count > 1 else None) for path, count in counts.items() for series in range(count)]
    stems = [
        _safe(_stem(path)) + ("" if series is None else f"_s{series:0{len(str(counts[path] - 1))}d}")
        for path, series in found
    ]
    wheres = [_where(path, series) for path, series in found]
    names: list[str | None] = [None] * len(found)
    for k, where in enumerate(wheres):
        if where in given and given[where] not in names:
            names[k] = given[where]
    if recorded is not None:
        _moved(found, names, given, recorded)
    taken = set(given.values())  # also those of inputs not in this run: their files are in the output
    for k, ((path, _), stem) in enumerate(zip(found, stems)):
        if names[k] is not None:
            continue
        placed = f"{_safe(path.parent.name)}_{stem}"
        candidates = ([stem] if stems.count(stem) == 1 else []) + [placed, f"{placed}_{_kind_suffix(path)}"]
        name = next((c for c in candidates if c not in names and c not in taken), candidates[-1])
        while name in names or name in taken:
            name += "_"
        names[k] = name
    return [Input(name, path, kind_of(path), series=series) for name, (path, series) in zip(names, found)]  # type: ignore[arg-type]


def _moved(found: list[tuple[Path, int | None]], names: list[str | None], given: Mapping[str, str], recorded: Recorded) -> None:
    """Name each unnamed input of ``found`` that was moved (a folder moved or renamed, with or
    without the output beside it) as ``given`` names it at its old place: the file name and series
    are the same, the old path is gone, and the content is what the old name's input was made from
    (``recorded``; the files are read, each once). Where several fit, the pairs sharing the most of
    their paths are matched first (:func:`_match`); an input two gone ones fit equally, or a gone one
    two inputs fit equally, is named afresh. Fills ``names`` in place."""
    open_k = [k for k, name in enumerate(names) if name is None]
    if not open_k or not given:
        return
    used = set(filter(None, names))
    by_file: dict[tuple[str, int | None], list[tuple[Path, str]]] = {}
    for where, name in given.items():
        old, series = _parse_where(where)
        if name not in used:
            by_file.setdefault((old.name, series), []).append((old, name))
    gone: dict[Path, bool] = {}
    sources: dict[str, Mapping | None] = {}
    digests: dict[Path, str] = {}
    fits = []
    for k in open_k:
        path, series = found[k]
        candidates = [(old, name) for old, name in by_file.get((path.name, series), ()) if _gone(old, gone)]
        files = _input_files(path, series) if candidates else None
        for old, name in candidates:
            if name not in sources:
                sources[name] = recorded(name)
            if files is not None and _same_content(files, sources[name], digests):
                fits.append((_shared_tail(old, path), k, name, old))
    moved = []
    for k, name, old in _match(fits):
        names[k] = name
        moved.append(f"{old} -> {found[k][0]}")
    if moved:
        log.info("%d input(s) moved keep their names (the same content, their old places gone): %s", len(moved),
                 "; ".join(moved[:3]) + ("; ..." if len(moved) > 3 else ""))


def _match(fits: list[tuple[int, int, str, Path]]) -> list[tuple[int, str, Path]]:
    """Inputs matched to gone names from ``(shared path parts, input, name, old path)`` fits, best
    first, whatever the inputs' order: at each number of shared parts, an input whose only fit left
    is a name that no other input fits as well takes it; one with two fits, or whose fit another
    input shares, takes none (so later, worse fits do not decide either)."""
    done_k: set[int] = set()
    done_names: set[str] = set()
    matched = []
    for tail in sorted({fit[0] for fit in fits}, reverse=True):
        level = [fit for fit in fits if fit[0] == tail and fit[1] not in done_k and fit[2] not in done_names]
        for k in sorted({fit[1] for fit in level}):
            mine = [fit for fit in level if fit[1] == k]
            if len(mine) == 1 and sum(fit[2] == mine[0][2] for fit in level) == 1:
                matched.append((k, mine[0][2], mine[0][3]))
        done_k |= {fit[1] for fit in level}
        done_names |= {fit[2] for fit in level if any(other[1] != fit[1] for other in level if other[2] == fit[2])}
        done_names |= {name for _, name, _ in matched}
    return matched


def _input_files(path: Path, series: int | None) -> dict[str, Path] | None:
    """The files the input at ``path`` is made of, keyed as its store records them; ``None`` where unreadable."""
    probe = input_dataset(Input("moved", path, kind_of(path), series=series), ndim=2, classes=["background", "object"],
                          instances=False)  # only its files are listed
    try:
        return {source_key(probe, file): file for file in source_files(probe)}
    except (OSError, InputError):  # it fails on its own later, under a name of its own
        return None


def _same_content(files: dict[str, Path], sources: Mapping[str, Mapping] | None, digests: dict[Path, str]) -> bool:
    """Whether ``files`` are those ``sources`` records: the same names and sizes, then the same
    SHA-256 (each file read once into ``digests``; never taken on size and time, which another file
    may share)."""
    if not sources or set(files) != set(sources):
        return False
    try:
        if any(file.stat().st_size != (sources[key] or {}).get("size") for key, file in files.items()):
            return False
        return all(_digest(file, digests) == (sources[key] or {}).get("sha256") for key, file in files.items())
    except (OSError, InputError):  # unreadable now: it fails on its own later, under a name of its own
        return False


def _digest(path: Path, digests: dict[Path, str]) -> str:
    if path not in digests:
        digests[path] = file_digest(path)
    return digests[path]


def _parse_where(where: str) -> tuple[Path, int | None]:
    """The path and series an :attr:`Input.where` names."""
    found = re.fullmatch(r"(.*) \(series (\d+)\)", where)
    return (Path(found[1]), int(found[2])) if found else (Path(where), None)


def _shared_tail(a: Path, b: Path) -> int:
    """How many path parts ``a`` and ``b`` share at their ends (``x/day1/a.tif``, ``y/day1/a.tif``: 2)."""
    n = 0
    for one, two in zip(reversed(a.parts), reversed(b.parts)):
        if one != two:
            break
        n += 1
    return n


def _gone(path: Path, known: dict[Path, bool]) -> bool:
    """Whether ``path`` no longer exists, looked up once into ``known`` (a path made unreadable is not known to be gone)."""
    if path not in known:
        try:
            known[path] = not path.exists()
        except OSError:
            known[path] = False
    return known[path]


def _kind_suffix(path: Path) -> str:
    """``tif`` for ``x.tif``, ``ome-zarr`` for ``x.ome.zarr``: what tells two files of one stem in one folder apart."""
    return _safe(path.name[len(_stem(path)) :].lstrip(".").replace(".", "-").lower()) or "folder"


def _where(path: Path, series: int | None) -> str:
    return str(path) if series is None else f"{path} (series {series})"


def _safe(name: str) -> str:
    """A name usable as a file and zarr group name: ASCII letters, digits and ``._+-``.

    A name that loses characters (``Zelle_ö``, ``細胞``) gets six hex digits of its own digest
    (``Zelle-1c9a0b``, ``image-5b0f6e``): two such names stay apart, and each keeps its name
    whatever other inputs a run has.
    """
    safe = re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "image"
    if safe == name:
        return safe
    return f"{safe}-{hashlib.sha256(name.encode('utf-8', 'surrogateescape')).hexdigest()[:6]}"


def input_dataset(
    item: Input,
    *,
    ndim: int,
    classes: list[str],
    instances: bool,
    spacing: list[float] | None = None,
    unit: str | None = None,
    axes: str | None = None,
    channels: list[int] | None = None,
    assumed_spacing: tuple[tuple[float, ...], str] | None = None,
) -> Dataset:
    """``item`` as a one-entry dataset without ground truth, every image in ``test``.

    A CTC sequence gives one image per frame (any ground truth beside it is not read).
    ``assumed_spacing``: the pixel size and unit taken where the file gives none (see :class:`Dataset`).
    """
    entry = DatasetEntry(
        images=item.path.name,  # beside root: the store's fingerprint holds no folder, so a moved input is current
        format="ctc" if item.kind == "ctc" else "auto",
        ndim=ndim,
        classes=classes,
        instances=instances,
        spacing=spacing,
        unit=unit,
        axes=axes,
        channels=channels,
        series=item.series,
        allow_outside_root=True,
    )
    if item.kind == "ctc":
        frames = sequence_frames(item.path)
        width = max(3, len(str(max(frames))))
        records = [ImageRecord(f"{item.name}-t{t:0{width}d}", path, None, "test", frame=t) for t, path in frames.items()]
    else:
        records = [ImageRecord(item.name, item.path, None, "test")]
    return Dataset(name=item.name, entry=entry, root=item.path.parent, records=tuple(records), assumed_spacing=assumed_spacing)


def input_files(path: Path) -> dict[str, Path]:
    """Every file of the input at ``path`` (the file, or a folder's files at any depth), keyed by its
    path from the input's own folder, as ingest names its sources."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {str(p.relative_to(path.parent)): p for p in files}


def files_now(path: Path) -> str:
    """A short stamp of an input's files (:func:`input_files`) as they are now: how many, and a
    digest of their names, sizes and times (``stat`` only; an OME-Zarr of many chunks stays one
    line); ``""`` when it is gone."""
    try:
        listed = [[key, stat_of(file)] for key, file in input_files(path).items()]
    except OSError:
        return ""
    digest = hashlib.sha256(json.dumps(listed, sort_keys=True).encode()).hexdigest()[:16]
    return f"{len(listed)} file(s), {digest}"


__all__ = ["IMAGE_SUFFIXES", "Input", "files_now", "find_inputs", "input_dataset", "input_files", "kind_of"]

