"""Which model a name points at: a model folder, a catalog dataset whose trained model to use, or a shipped model."""

from __future__ import annotations

from pathlib import Path

from segpipe.data.catalog import Catalog
from segpipe.errors import CatalogError, ModelNotFound
from segpipe.models.card import ModelCard
from segpipe.models.model import MODEL_FILE, Model
from segpipe.models.shipped import shipped_model, shipped_names
from segpipe.pipeline.run_folder import RunFolder


#: What marks a BioImage Model Zoo package's folder (segpipe reads one only through `models import`).
PACKAGE_FILES = ("rdf.yaml", "bioimageio.yaml")


def resolve_model(ref: str | Path, *, output: str | Path, catalog: Catalog | None = None, base: Path | None = None) -> Model:
    """The model ``ref`` names.

    Args:
        ref: A model folder or ``model.pt`` (relative to ``base``), the name of a catalog
            dataset (its run's model, ``OUTPUT/DATASET/model``), or of a model shipped with segpipe.
        output: The runs folder.
        catalog: The catalog whose dataset names are accepted.
        base: Folder relative paths start from (the catalog's, for its ``model:`` key).

    Raises:
        ModelNotFound: Nothing of that name; the message lists what was tried.
        ModelError: The folder holds no valid model.
    """
    path = Path(ref) if base is None or Path(ref).is_absolute() else base / ref
    if path.is_file() and (path.parent / MODEL_FILE).is_file() and (path.suffix != ".pt" or path.name == MODEL_FILE):
        return Model.open(path.parent)  # model.pt, its card or history: the folder's model (another .pt is other weights)
    if path.is_dir() and not (path / MODEL_FILE).exists() and any((path / n).is_file() for n in PACKAGE_FILES):
        raise ModelNotFound(f"{path}: an unzipped model package, not a model folder; import it first: "
                            f"segpipe models import {path} --to FOLDER, then --model FOLDER")
    if path.is_dir() and not (path / MODEL_FILE).exists() and (path / "model" / MODEL_FILE).is_file():
        return Model.open(path / "model")  # a run folder: the model it trained
    if path.is_dir() and ((path / MODEL_FILE).exists() or catalog is None or str(ref) not in catalog):
        return Model.open(path)
    if catalog is not None and str(ref) in catalog:  # a dataset's name, even beside a folder of it without a model
        catalog.entry(str(ref))  # an invalid entry says what is wrong with it
        folder = RunFolder.of(output, str(ref)).model_dir
        if not (folder / MODEL_FILE).is_file():
            raise ModelNotFound(
                f"{folder}: catalog dataset {str(ref)!r} has no trained model yet; run `segpipe train {ref}` "
                f"(or `segpipe run {ref}`) first"
            )
        return Model.open(folder)
    shipped = shipped_model(str(ref))
    if shipped is not None:
        return shipped
    tried = f"no model folder {path}" + (f", no catalog dataset named {str(ref)!r}" if catalog is not None else "")
    tried += f" and no shipped model of that name ({', '.join(shipped_names()) or 'none installed'})"
    if path.is_file() and path.name.lower() in PACKAGE_FILES:
        tried += f"; {path.name} describes a model package: segpipe models import {path.parent} --to FOLDER, then --model FOLDER"
    if path.is_file() and path.suffix.lower() == ".zip":
        tried += f"; a model package is imported first: segpipe models import {path} --to FOLDER, then --model FOLDER"
    raise ModelNotFound(f"{ref}: {tried}")


def model_to_apply(catalog: Catalog, dataset: str, *, output: str | Path) -> str | None:
    """The folder of the model a catalog entry's ``model:`` key names, or ``None`` (train one).

    Raises:
        CatalogError: The entry has no labels and names no model: there is nothing to segment it with.
        ModelNotFound: The model it names is not there (a catalog dataset's: not trained yet).
    """
    entry = catalog.entry(dataset)
    if entry.model is None and not entry.labelled:
        raise CatalogError(
            f"{catalog.path}: dataset {dataset!r} has no labels to train on: name the model to segment it "
            "with (model: a model folder, or a catalog dataset whose trained model to use)"
        )
    model = entry_model(catalog, dataset, output=output)
    return None if model is None else str(model.folder)


def entry_model(catalog: Catalog, dataset: str, *, output: str | Path, untrained_ok: bool = False) -> Model | None:
    """The model a catalog entry's ``model:`` key names, or ``None`` when it names none.

    ``untrained_ok``: also ``None`` when it names a catalog dataset whose model is not trained yet
    (ingest goes on without it; predicting cannot). Any other name that is not found raises
    :class:`~segpipe.errors.ModelNotFound`.
    """
    ref = catalog.entry(dataset).model
    if ref is None:
        return None
    folder = RunFolder.of(output, ref).model_dir
    if untrained_ok and ref in catalog and not (catalog.root / ref).exists() and not (folder / MODEL_FILE).is_file():
        return None
    return resolve_model(ref, output=output, catalog=catalog, base=catalog.root)


def assumed_spacing(card: ModelCard) -> tuple[tuple[float, ...], str] | None:
    """The pixel size taken for a file that gives none: the model's, so the network sees the image
    at its own pixels (as Cellpose and StarDist see every image) instead of resampled from a guess;
    ``None`` (1 per pixel, for the measurements only) for a model that does not use pixel sizes
    (a generalist, a model of one object size, a model whose own pixel size was a guess)."""
    if card.generalist or card.object_size or card.spacing_guessed:
        return None
    return tuple(float(s) for s in card.spacing), card.unit


def model_for(run: RunFolder, model: str | Path | None = None) -> Model:
    """The model to predict with: ``model`` (a model folder) when given, else the run's own."""
    return Model.open(model if model is not None else run.model_dir)
