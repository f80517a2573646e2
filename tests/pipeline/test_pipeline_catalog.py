"""The pipeline's view of the catalog: training sections checked at load, and who overrides whom."""

from __future__ import annotations

from pathlib import Path

import pytest

from segpipe.errors import CatalogError
from segpipe.pipeline.catalog import open_catalog, train_params
from segpipe.training.params import TrainParams


def _catalog(tmp_path: Path, training: str) -> Path:
    for sub in ("img", "lab"):
        (tmp_path / sub).mkdir(exist_ok=True)
        (tmp_path / sub / "a.tif").write_bytes(b"x")
    path = tmp_path / "catalog.yaml"
    path.write_text(
        "datasets:\n  d:\n    images: img/*.tif\n    labels: lab/*.tif\n    split: {train: [a]}\n"
        f"    training: {training}\n"
    )
    return path


@pytest.mark.parametrize(
    ("training", "message"),
    [("{epochs: 0}", "training: epochs: Input should be greater than or equal to 1"),
     ("{epoch: 3}", "training: epoch: unknown field"),
     ("{network: resnet}", "unknown network 'resnet'")],
)
def test_a_bad_training_section_fails_when_the_catalog_is_loaded(tmp_path, training, message):
    with pytest.raises(CatalogError, match=f"dataset 'd': .*{message}"):
        open_catalog(_catalog(tmp_path, training)).check()


def test_defaults_then_catalog_then_what_is_given(tmp_path):
    catalog = open_catalog(_catalog(tmp_path, "{epochs: 30, seed: 4, learning_rate: 0.01}"))
    assert train_params(catalog, "d").model_dump(include={"epochs", "seed", "learning_rate"}) == {
        "epochs": 30, "seed": 4, "learning_rate": 0.01,
    }
    given = TrainParams(seed=7)  # only seed is set: the catalog keeps its epochs and rate
    merged = train_params(catalog, "d", given)
    assert (merged.epochs, merged.seed, merged.learning_rate) == (30, 7, 0.01)
    explicit_default = TrainParams(epochs=200)  # set explicitly to the default value: still wins
    assert train_params(catalog, "d", explicit_default).epochs == 200
    with pytest.raises(CatalogError, match="no dataset named 'x'"):
        train_params(catalog, "x")


def test_a_model_the_catalog_cannot_name_is_refused_when_it_is_loaded(tmp_path):
    """`model: nosuchmodel` passed `segpipe catalog` and failed only at predict."""
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.tif").write_bytes(b"x")
    (tmp_path / "models" / "mine").mkdir(parents=True)
    path = tmp_path / "catalog.yaml"
    body = "datasets:\n  d:\n    images: img/*.tif\n    model: {}\n  other:\n    images: img/*.tif\n    model: cells-2d\n"
    for ref in ("models/mine", "other", "cells-2d", str(tmp_path / "models" / "mine")):
        path.write_text(body.format(ref))
        open_catalog(path).check()
    path.write_text(body.format("nosuchmodel"))
    with pytest.raises(CatalogError, match=r"dataset 'd': model: 'nosuchmodel' is no model folder under .*, no catalog "
                                           r"dataset and no shipped model \(cells-2d\)$"):
        open_catalog(path).check()


def test_a_dataset_named_like_a_folder_of_its_data_resolves_to_the_datasets_model(tmp_path, crops_model):
    """`model: sem` where ./sem/ held the dataset's images: "sem: no trained model here (model.pt is
    missing)", though the catalog dataset sem had a trained model."""
    import shutil

    from segpipe.pipeline.models import resolve_model

    (tmp_path / "sem").mkdir()  # the data folder, no model in it
    (tmp_path / "sem" / "a.tif").write_bytes(b"x")
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.tif").write_bytes(b"x")
    shutil.copytree(crops_model.folder, tmp_path / "runs" / "sem" / "model")
    path = tmp_path / "catalog.yaml"
    path.write_text("datasets:\n  sem:\n    images: sem/*.tif\n  other:\n    images: img/*.tif\n    model: sem\n")
    catalog = open_catalog(path)
    chosen = resolve_model("sem", output=tmp_path / "runs", catalog=catalog, base=tmp_path)
    assert chosen.folder == tmp_path / "runs" / "sem" / "model"
