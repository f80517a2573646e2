"""Where one catalog dataset's run keeps its files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunFolder:
    """``OUTPUT/DATASET/``, the run folder of one catalog dataset::

        data.zarr/           the ingested images and ground truth (OME-Zarr)
        model/               the model trained here (model.pt, model_card.json, last.pt, history.csv)
        predictions.zarr/    the predictions of the split, by whichever model made them
        predictions/         the same labels as TIFF, NIfTI or CTC files
        metrics.json         scores on the test split (metrics-validation.json: on another split)
        report.md, report.html, figures/, runs.jsonl
        validation/          report.md, report.html, figures/ of another split's scores

    The model folder is an ordinary model folder: it can be copied, shared and applied to
    any other store.
    """

    root: Path

    @classmethod
    def of(cls, output: str | Path, dataset: str) -> RunFolder:
        """The run folder of ``dataset`` under ``output``."""
        return cls(Path(output) / dataset)

    @property
    def dataset(self) -> str:
        return self.root.name

    @property
    def store(self) -> Path:
        return self.root / "data.zarr"

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions.zarr"

    @property
    def exports(self) -> Path:
        return self.root / "predictions"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    def metrics_for(self, split: str) -> Path:
        """The scores of ``split``: ``metrics.json`` for the test split, ``metrics-SPLIT.json`` for another."""
        return self.metrics if split == "test" else self.root / f"metrics-{split}.json"

    def report_dir(self, split: str) -> Path:
        """Where the report of ``split`` goes: the run folder for the test split, ``SPLIT/`` in it for another."""
        return self.root if split == "test" else self.root / split
