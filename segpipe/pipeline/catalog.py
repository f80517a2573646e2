"""The catalog as the pipeline reads it: every entry's ``training:`` section checked as it is loaded.

The data room's catalog resolves files and splits and keeps ``training:`` as written; here it
is validated against :class:`~segpipe.training.params.TrainParams`, so a typo in a training
key fails when the catalog is read, with the entry named, before anything runs.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from segpipe.data.catalog import Catalog, load_catalog
from segpipe.errors import CatalogError, explain
from segpipe.models.shipped import shipped_names
from segpipe.training.params import TrainParams


def open_catalog(path: str | Path) -> Catalog:
    """Load ``path`` and check every entry's ``training:`` section and ``model:`` name; an entry
    that fails is set aside with its problem (:attr:`Catalog.invalid`), as :func:`load_catalog`
    sets aside one that does not validate.

    Raises:
        CatalogError: The file is missing, a folder, not YAML, or its top level is invalid.
    """
    if Path(path).is_dir():
        raise CatalogError(f"{path}: a folder, not a catalog file; give the catalog's YAML file with --catalog FILE")
    if not Path(path).is_file():
        raise CatalogError(f"{path}: catalog file not found; give it with --catalog FILE (segpipe segment --model "
                           "MODEL_FOLDER needs no catalog)")
    catalog = load_catalog(path)
    for name, entry in list(catalog.entries.items()):
        try:
            TrainParams.model_validate(entry.training)
        except ValidationError as err:
            catalog.set_invalid(name, f"{catalog.path}: dataset {name!r}: training: {explain(err)}")
            continue
        if entry.model is not None and not _names_a_model(entry.model, catalog):
            catalog.set_invalid(
                name, f"{catalog.path}: dataset {name!r}: model: {entry.model!r} is no model folder under {catalog.root}, "
                f"no catalog dataset and no shipped model ({', '.join(shipped_names())})"
            )
    return catalog


def _names_a_model(ref: str, catalog: Catalog) -> bool:
    """Whether ``ref`` can name a model: a path that exists (from the catalog's folder), a catalog
    dataset (whose model training makes; an invalid one says its own problem when it is used), or a
    shipped model."""
    return (catalog.root / ref).exists() or ref in catalog or ref in shipped_names()


def train_params(catalog: Catalog, dataset: str, given: TrainParams | None = None) -> TrainParams:
    """Training parameters for ``dataset``: defaults, then the entry's ``training:``, then ``given``.

    Only the fields of ``given`` that were set explicitly (on the command line, in a deployment's
    or a flow run's parameters) override the catalog.
    """
    entry = catalog.entry(dataset)
    values = dict(entry.training)
    if given is not None:
        values.update(given.model_dump(exclude_unset=True))
    try:
        return TrainParams.model_validate(values)
    except ValidationError as err:
        raise CatalogError(f"{catalog.path}: dataset {dataset!r}: training: {explain(err)}") from None
