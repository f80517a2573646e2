"""``segpipe models``: list trained models, and move them in and out as BioImage Model Zoo packages."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from segpipe.cli.app import DEFAULT_OUTPUT, app
from segpipe.data.readers.units import sizes_text
from segpipe.errors import InputError, ModelError


class _ListUnlessCommand(TyperGroup):
    """``segpipe models [FOLDER...]`` lists: a first word that is not a subcommand goes to ``list``."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = ["list", *args]
        return super().parse_args(ctx, args)


models_app = typer.Typer(
    cls=_ListUnlessCommand,
    help=(
        "Trained models: list them, export one as a BioImage Model Zoo package, import one back, tell one the pixel size "
        "its training images were taken at.\n\n"
        "`segpipe models [FOLDER...]` lists the models found under the folders (default: runs and models), the same as "
        "`segpipe models list`.\n\n"
        "Example: segpipe models runs shared/models"
    ),
    no_args_is_help=False,
    pretty_exceptions_enable=False,
)
app.add_typer(models_app, name="models")

COLUMNS = ["folder", "name", "network", "dims", "channels", "classes", "pixel size", "trained on", "epochs", "ended by", "validation"]


#: Where ``segpipe models`` looks when given no folder: the runs, and where shared models are imported.
DEFAULT_FOLDERS = (DEFAULT_OUTPUT, Path("models"))


@models_app.command("list")
def list_models(
    folders: Annotated[
        Optional[list[Path]],
        typer.Argument(help="Folders to search (model folders themselves too). Default: runs and models, where there are."),
    ] = None,
) -> None:
    """List the trained models under FOLDERS, one row each, then the models shipped with segpipe.

    Columns: folder, name, network, 2D/3D, input channels, classes, pixel size the model was trained
    at, training dataset, epochs, how training ended (planned iterations or time budget), and the
    validation scores from the model card. Folders that look like models but whose card or weights
    cannot be read are listed with the reason. A shipped model's folder column is its name followed by "(shipped)":
    give that name to --model or --init, or as init: in a catalog entry's training:.

    Example: segpipe models runs
    """
    from segpipe.models.model import Model
    from segpipe.models.shipped import shipped_model, shipped_names

    roots = folders or [f for f in DEFAULT_FOLDERS if f.is_dir()]
    for root in roots:
        if root.is_file():
            raise InputError(f"{root}: a file, not a folder (give the folder that holds the models)")
        if not root.is_dir():
            raise InputError(f"{root}: no such folder")
    rows, broken = [], []
    for folder in (f for root in roots for f in find_model_folders(root)):
        try:
            model = Model.open(folder)
            model.load("cpu")  # the weights read and fit the card's network, as segment will need them
            rows.append(model_row(folder, model.card))
        except ModelError as err:
            broken.append(f"{folder}: unreadable: {err}")
    if not rows and not broken:
        typer.echo(f"no trained models under {', '.join(map(str, roots))}" if roots else
                   f"no trained models: no folder {DEFAULT_OUTPUT} or models here (segpipe run and train write theirs "
                   f"in {DEFAULT_OUTPUT}; the README imports shared ones into models)")
    rows += [model_row(f"{name} (shipped)", shipped_model(name).card) for name in shipped_names()]
    if rows:
        widths = [max(len(r[i]) for r in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
        for row in [COLUMNS, *rows]:
            typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    for line in broken:
        typer.echo(line)


def find_model_folders(root: Path) -> list[Path]:
    """Folders holding a ``model.pt`` or a ``model_card.json`` (a model that lost its weights) under
    ``root`` (itself included), sorted; zarr stores and hidden folders skipped."""
    from segpipe.models.model import CARD_FILE, MODEL_FILE

    found = []
    for here, dirs, files in os.walk(root):
        if MODEL_FILE in files or CARD_FILE in files:
            found.append(Path(here))
        dirs[:] = [d for d in dirs if not d.startswith(".") and not d.endswith(".zarr")]
    return sorted(found)


def model_row(folder: Path | str, card) -> list[str]:
    """One listing row of a model card (see ``COLUMNS``); a generalist's pixel size is each image's own."""
    training = card.training
    scores = [f"{k} {v:.3f}" for k, v in training.validation.items() if isinstance(v, int | float) and not isinstance(v, bool)]
    if scores and training.scored_on_training:
        scores[0] = f"on training images: {scores[0]}"
    elif scores and card.generalist:  # its own kinds of images, which the post-processing was tuned on
        scores[0] = f"on its own kinds of images, tuned on them (real images score lower: README): {scores[0]}"
    channels = str(card.in_channels) + (f" ({','.join(card.channel_names)})" if card.channel_names else "")
    return [
        str(folder),
        card.name,
        card.network,
        f"{card.spatial_dims}D",
        channels,
        ",".join(card.classes) + (" +instances" if card.instances else ""),
        "each image's own" if card.generalist else f"{sizes_text(card.spacing)} {card.unit}"
        + (" (not known: 1 per pixel taken)" if card.spacing_guessed else ""),
        training.dataset or "-",
        str(training.epochs) if training.epochs is not None else "-",
        training.ended_by or "-",
        ", ".join(scores) or "-",
    ]


@models_app.command("export")
def export_cmd(
    model: Annotated[
        str, typer.Argument(help="A model folder (holding model.pt and model_card.json), or a shipped model's name (cells-2d).")
    ],
    to: Annotated[Path, typer.Option("--to", help="The package to write, a .zip file in an existing folder (a file there is replaced).")],
    test: Annotated[
        bool, typer.Option("--test/--no-test", help="Run bioimageio.core's model test on the package first (about 10-60 s).")
    ] = True,
    sample: Annotated[
        Optional[Path],
        typer.Option(
            help="An image (TIFF, PNG, NIfTI) for the test tensors instead of a synthetic one; cropped where its intensities vary most; "
            "channels on the first axis for multi-channel models."
        ),
    ] = None,
    author: Annotated[Optional[list[str]], typer.Option(help="An author's name (repeatable); the zoo asks for one.")] = None,
    license: Annotated[Optional[str], typer.Option(help="SPDX license of the weights, e.g. CC-BY-4.0.")] = None,
) -> None:
    """Write MODEL as one BioImage Model Zoo package (bioimageio format 0.5) for bioimage.io, deepImageJ,
    QuPath, ilastik and bioimageio.core.

    The package carries TorchScript weights (what deepImageJ and QuPath run) and the plain weights
    with an architecture file, outputs probabilities (the classes, plus the distance map of
    instance models), describes segpipe's normalization as preprocessing, and keeps the whole
    model card in config.segpipe. Needs the bioimageio extra: pip install -c constraints.txt
    'segpipe\\[bioimageio]'.

    Example: segpipe models export runs/bbbc007/model --to bbbc007-unet.zip --author 'Ada Lovelace' --license CC-BY-4.0
    """
    from segpipe.models.bioimageio import export_model
    from segpipe.models.bioimageio.description import check_license
    from segpipe.models.bioimageio.extra import require_bioimageio
    from segpipe.pipeline.models import resolve_model

    _check_target(to)
    if license is not None:
        require_bioimageio()
        check_license(license)
    chosen = resolve_model(model, output=DEFAULT_OUTPUT)
    warn = logging.getLogger("segpipe.cli.models").warning
    if chosen.card.spacing_guessed and not chosen.card.generalist:
        warn("%s: its pixel size is not known (its training images' files gave none): whoever runs the package gets "
             "objects found at the size in pixels its training images showed them, whatever their images' pixel size; "
             "to share a model that resamples by physical size, give it the pixel size its training images were taken at "
             "(segpipe models pixel-size %s SIZE --unit UNIT) and export it again", chosen.folder, model)
    if not author or not license:
        warn("the package names no %s: the BioImage Model Zoo asks for both (--author NAME, --license SPDX-ID)",
             " and no ".join(w for w, given in (("author", author), ("license", license)) if not given))
    image = _read_sample(sample, chosen.card) if sample is not None else None
    replaced = to.is_file()
    written = export_model(chosen, to, test=test, sample=image, authors=author or (), license=license)
    state = "tested with bioimageio.core" if test else "not tested"
    typer.echo(f"{written}: BioImage Model Zoo package of {chosen.folder} ({written.stat().st_size / 1e6:.1f} MB, {state}"
               f"{'; it replaced the file that was there' if replaced else ''})")


def _check_target(path: Path) -> None:
    """Refuse a package path that is not a ``.zip`` in an existing folder, before anything is read or
    said (a mistyped ``--to`` was made silently wherever it led; the Python API makes the folder).

    Raises:
        ModelError: Not a ``.zip``, a folder, or its folder missing or a file.
    """
    from segpipe.errors import ModelError

    if path.is_dir():
        raise ModelError(f"{path}: a folder; give the package's file in it, such as {path / 'model.zip'}")
    if path.suffix.lower() != ".zip":
        raise ModelError(f"{path}: a BioImage Model Zoo package is a .zip file; name it like {path.name}.zip")
    folder = path.parent
    for above in (folder, *folder.parents):
        if above.exists():
            if not above.is_dir():
                raise ModelError(f"{above}: a file, not a folder (the package {path} would go inside it)")
            break
    if not folder.is_dir():
        raise ModelError(f"{folder}: no such folder (make it first, or give another --to)")


def _read_sample(path: Path, card):
    """A raw image as ``(C, *spatial)``: channels on the file's first axis for multi-channel models."""
    from segpipe.data.readers import AxesSpec, open_source, read_image
    from segpipe.errors import InputError, ModelError
    from segpipe.models.bioimageio import check_sample

    spec = AxesSpec(fill="Z" if card.spatial_dims == 3 else "")
    if card.in_channels == 1:
        with open_source(path, spec=spec) as source:
            channels = source.channels
        if channels != 1:
            raise ModelError(f"{path}: the sample has {channels} channels; model {card.name!r} takes 1: give a one-channel image")
    else:
        try:
            with open_source(path, spec=spec) as source:  # a file that says its axes; the others are read as CYX below
                plain = source.channels == 1 and len(source.meta.axes) == card.spatial_dims
        except InputError as err:
            if "cannot tell what axis" not in str(err):
                raise  # unreadable: say so, not what a misread axis lacks
            plain = False
        if plain:
            raise ModelError(f"{path}: the sample has 1 channel; model {card.name!r} takes {card.in_channels}: give a "
                             f"{card.in_channels}-channel image, channels on the first axis")
    array = read_image(path, ndim=card.spatial_dims, channel_axis=0 if card.in_channels > 1 else None,
                       expected_by=f"model {card.name!r}").array
    return check_sample(card, array if card.in_channels > 1 else array[None], name=str(path))


@models_app.command("import")
def import_cmd(
    package: Annotated[Path, typer.Argument(help="A package written by `segpipe models export`: the zip, or the folder it was unzipped into.")],
    to: Annotated[Path, typer.Option("--to", help="A new model folder to write.")],
) -> None:
    """Read a BioImage Model Zoo package made by segpipe back into a model folder.

    The card comes from the package's config.segpipe and the weights from its pytorch_state_dict
    entry (plain tensors; nothing in a package runs). Every file's checksum is verified. Packages
    made by other tools have no segpipe card and are refused: run them with bioimageio.core or
    deepImageJ. Needs the bioimageio extra.

    Example: segpipe models import bbbc007-unet.zip --to models/bbbc007 && segpipe segment --model models/bbbc007 'new/*.tif'
    """
    from segpipe.models.bioimageio import import_model

    model = import_model(package, to)
    typer.echo(f"{model.folder}: model {model.card.name!r} ({model.card.network}, {model.card.spatial_dims}D) from {package}")


@models_app.command("pixel-size")
def pixel_size_cmd(
    model: Annotated[str, typer.Argument(help="A model folder (or its run folder) whose training images' files gave no pixel size.")],
    size: Annotated[str, typer.Argument(help="One pixel of its training images: one size for every axis (0.65), or Y,X (Z,Y,X for a 3D model).")],
    unit: Annotated[str, typer.Option("--unit", help="Unit of SIZE: nanometer, micrometer, millimeter, centimeter or meter (nm, um, µm, mm, cm, m).")] = "micrometer",
) -> None:
    """Tell MODEL the pixel size of the images it was trained on, where their files gave none.

    Until then such a model takes every new image at 1 per pixel, as its training images were
    taken, whatever the image's own file says (an image at twice the magnification shows it
    objects twice the size it learnt), and measures objects at 1 unit a pixel. Once told, new images are
    resampled to the model's pixel size by their own (an image whose file gives none is taken at
    the model's), measurements are in UNIT, and `segpipe models export` packages say the size.
    The card's planned pixel size and object size are converted; the weights are unchanged.
    model.pt and model_card.json are rewritten in place, each by an atomic rename; inputs segmented
    with the model before are segmented again when next asked for. A size set so can be set again
    (corrected); a model trained at a known pixel size, or a generalist, is refused.

    Example: segpipe models pixel-size runs/kc167/model 0.65 --unit um
    """
    from segpipe.data.readers.units import length_unit
    from segpipe.models.model import save_model
    from segpipe.pipeline.models import resolve_model

    chosen = resolve_model(model, output=DEFAULT_OUTPUT)
    card = chosen.card
    try:
        values = tuple(float(v) for v in size.split(","))
        name = length_unit(unit)
    except ValueError as err:
        reason = str(err) if "unit" in str(err) else f"{size!r} is not a pixel size; give numbers separated by commas (0.65 or 0.65,0.65)"
        raise InputError(f"{chosen.folder}: {reason}") from None
    if len(values) == 1:
        values = values * card.spatial_dims
    try:
        told = card.at_pixel_size(values, name)
    except ValueError as err:
        raise ModelError(f"{chosen.folder}: {err}") from None
    save_model(chosen.folder, chosen.state_dict(), told)
    before, after = sizes_text(card.spacing), sizes_text(told.spacing)
    was = (f"{before} {card.unit}, set with models pixel-size" if card.pixel_size_set is not None
           else f"{before} per training pixel, not known")
    typer.echo(f"{chosen.folder}: pixel size {after} {told.unit} (was {was}); new images are resampled to it by their own pixel size")
