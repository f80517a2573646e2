"""Reading a package written by segpipe back into a segpipe model folder (plain weights only: nothing in it runs)."""

from __future__ import annotations

import io
import tempfile
import zipfile
import zlib
from pathlib import Path

import torch

from segpipe.errors import ModelError
from segpipe.models.bioimageio.extra import quiet, require_bioimageio
from segpipe.models.bioimageio.summary import first_error, one_line
from segpipe.models.card import ModelCard
from segpipe.models.model import MODEL_FILE, Model, network_from_card, save_model

#: The names a package's description file has (the newer name first).
DESCRIPTION_NAMES = ("bioimageio.yaml", "rdf.yaml")


def import_model(package: Path, folder: Path) -> Model:
    """Read a package written by :func:`export_model` into a new segpipe model folder.

    The card comes from ``config.segpipe`` (validated as a :class:`ModelCard`); the weights from
    the ``pytorch_state_dict`` entry, read with ``torch.load(weights_only=True)``: nothing in a
    package runs. Every file's SHA-256 is checked against the description.

    Raises:
        ModelError: bioimageio is not installed; the zip is damaged, misses a file or a file's hash
            differs; it was not made by segpipe; or ``folder`` already holds a model or other files.
    """
    package, folder = Path(package), Path(folder)
    if (folder / MODEL_FILE).exists():
        raise ModelError(f"{folder}: already holds a model; import into a new folder")
    if folder.is_dir() and any(folder.iterdir()):
        raise ModelError(f"{folder}: a folder with other files in it; import into a new (or empty) folder")
    with tempfile.TemporaryDirectory(prefix="segpipe-import-") as scratch:
        readable = _as_flat_zip(package, Path(scratch) / "package.zip")
        _check_zip(readable, shown=package)
        require_bioimageio()
        with quiet():  # the description holds the zip and files bioimageio leaves open: all released in here
            outcome = _read_package(readable)
    if isinstance(outcome, str):
        raise ModelError(outcome.replace(str(readable), str(package)))
    card, state = outcome
    return save_model(folder, state, card)


def _as_flat_zip(package: Path, scratch: Path) -> Path:
    """``package`` as a zip with its description at the top: itself when it is one; else a zip in
    ``scratch`` of the package an unzipped folder holds (at its top or one folder down, as an
    unzip tool leaves it), or of a zip whose package lies one folder down (a folder zipped again)."""
    if package.is_dir():
        top = _package_root(package, [p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file()])
        if top is None:
            raise ModelError(f"{package}: a folder without a BioImage Model Zoo package ({' or '.join(DESCRIPTION_NAMES)})")
        root = package / top
        with zipfile.ZipFile(scratch, "w", zipfile.ZIP_DEFLATED) as out:
            for file in sorted(p for p in root.rglob("*") if p.is_file()):
                out.write(file, file.relative_to(root).as_posix())
        return scratch
    if not zipfile.is_zipfile(package):
        return package  # _check_zip says what it is
    with zipfile.ZipFile(package) as archive:
        names = archive.namelist()
        top = _package_root(package, names)
        if not top:
            return package
        with zipfile.ZipFile(scratch, "w", zipfile.ZIP_DEFLATED) as out:
            for name in names:
                if name.startswith(top + "/") and not name.endswith("/"):
                    out.writestr(name[len(top) + 1 :], archive.read(name))
    return scratch


def _package_root(where: Path, names: list[str]) -> str | None:
    """The folder among ``names`` (relative paths) holding the description: ``""`` at the top, one
    folder down otherwise (macOS's ``__MACOSX`` copies left out); ``None`` when there is none."""
    if any(n in DESCRIPTION_NAMES for n in names):
        return ""
    below = {n.split("/")[0] for n in names if n.count("/") == 1 and n.split("/")[1] in DESCRIPTION_NAMES
             and not n.startswith("__MACOSX")}
    if len(below) > 1:
        raise ModelError(f"{where}: holds {len(below)} packages ({', '.join(sorted(below))}); import one at a time")
    return below.pop() if below else None


def _read_package(package: Path) -> tuple[ModelCard, dict] | str:
    """The card and the weights of a segpipe package, or what is wrong with it (one line)."""
    from bioimageio.spec import InvalidDescr, load_description
    from bioimageio.spec.model import v0_5 as spec
    from bioimageio.spec.utils import get_reader

    with zipfile.ZipFile(package) as archive:
        try:
            descr = load_description(archive, perform_io_checks=True)
        except Exception as err:  # the library raises its own types for zips it cannot read as packages
            return f"{package}: not a BioImage Model Zoo package ({one_line(err)})"
        if isinstance(descr, InvalidDescr):
            return f"{package}: invalid BioImage Model Zoo package: {first_error(descr.validation_summary, package)}"
        extra = (descr.config.model_extra or {}) if isinstance(descr, spec.ModelDescr) else {}
        if "segpipe" not in extra:
            return (
                f"{package}: not made by segpipe (no config.segpipe): only packages from `segpipe models export` can "
                "be imported, because segpipe needs the model card they carry (network, classes, normalization, "
                "post-processing) and weights of a network it builds; run other zoo models with bioimageio.core, "
                "deepImageJ or QuPath"
            )
        try:
            card = ModelCard.from_dict(extra["segpipe"], source=f"{package}: config.segpipe")
        except ModelError as err:
            return str(err)
        entry = descr.weights.pytorch_state_dict
        if entry is None:
            return (
                f"{package}: has TorchScript weights only (network {card.network!r} has no architecture file), and "
                "segpipe reads only plain weights (never code) from a package"
            )
        name = _file_name(entry.source)
        try:
            data = get_reader(entry.source, sha256=entry.sha256).read()
        except Exception as err:  # a hash mismatch or an unreadable member, in the library's exception types
            return f"{package}: {name}: {one_line(err)}"
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # pickle refusals and damaged files alike
        return f"{package}: {name}: not plain weights ({one_line(err)})"
    if not isinstance(state, dict):
        return f"{package}: {name}: not a state dict"
    try:
        network_from_card(card).load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as err:
        return f"{package}: {name}: the weights do not fit the card's network: {one_line(err)}"
    return card, state


def _check_zip(package: Path, *, shown: Path | None = None) -> None:
    """One line for a missing, unreadable or damaged zip (naming the damaged member); ``shown``:
    the path the user gave, when ``package`` is a flattened copy of it."""
    shown = shown or package
    if not package.is_file():
        raise ModelError(f"{shown}: no such file or folder")
    try:
        archive = zipfile.ZipFile(package)
    except (zipfile.BadZipFile, EOFError, OSError) as err:
        raise ModelError(f"{shown}: not a readable zip file ({one_line(err)})") from None
    with archive:
        for member in archive.infolist():
            try:
                with archive.open(member) as handle:
                    while handle.read(1 << 20):
                        pass
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as err:
                raise ModelError(f"{shown}: damaged zip file: {member.filename} cannot be read ({one_line(err)})") from None


def _file_name(source) -> str:
    return str(source).replace(":zipfile:", "").rsplit("/", 1)[-1]
