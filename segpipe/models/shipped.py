"""Models shipped inside the package, opened by name (``cells-2d``).

Each is a model folder under ``segpipe/models/starts/`` (weights, card, ``PROVENANCE.md``),
made here by a script of ``benchmarks/`` from data the project generates or vendors: nothing is
downloaded at run time.
"""

from __future__ import annotations

from pathlib import Path

from segpipe.models.model import MODEL_FILE, Model

#: Where the shipped model folders are.
STARTS = Path(__file__).parent / "starts"
#: The generalist 2D instance model (cells and nuclei; channels: cytoplasm or membrane, then nuclei).
CELLS_2D = "cells-2d"


def shipped_names() -> list[str]:
    """Names of the models this installation ships (folders holding weights)."""
    if not STARTS.is_dir():
        return []
    return sorted(folder.name for folder in STARTS.iterdir() if (folder / MODEL_FILE).is_file())


def shipped_model(name: str) -> Model | None:
    """The shipped model called ``name``, or None when there is none of that name."""
    return Model.open(STARTS / name) if name in shipped_names() else None
