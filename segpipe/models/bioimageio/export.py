"""Writing a segpipe model as one BioImage Model Zoo package, tested by bioimageio.core before it is put in place."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from segpipe.errors import ModelError
from segpipe.inference.memory import activate
from segpipe.models.bioimageio.architecture import ARCHITECTURES
from segpipe.models.bioimageio.description import check_license, describe
from segpipe.models.bioimageio.extra import quiet, require_bioimageio
from segpipe.models.bioimageio.files import write_files
from segpipe.models.bioimageio.preprocessing import preprocess
from segpipe.models.bioimageio.samples import raw_test_input
from segpipe.models.bioimageio.summary import first_failure, one_line
from segpipe.models.model import Model
from segpipe.temporary import replacing

log = logging.getLogger("segpipe.models.bioimageio")  # one logger for the whole package


def export_model(
    model: Model,
    path: Path,
    *,
    test: bool = True,
    sample: np.ndarray | None = None,
    authors: Sequence[str] = (),
    license: str | None = None,
) -> Path:
    """Write ``model`` as one BioImage Model Zoo package (a bioimageio.spec 0.5 zip) at ``path``.

    Args:
        model: A segpipe model folder (2D or 3D, any input channels; ``unet`` and ``fcn`` carry
            both weight formats, other registered networks TorchScript only).
        path: The zip to write (replaced if it exists; written under a temporary name first).
        test: Run bioimageio.core's model test on the package (offline) before putting it in place.
        sample: A raw channel-first image ``(C, *spatial)`` for the test tensors (cropped to a
            size the package accepts, where the first channel's intensities vary most); a seeded
            synthetic image when ``None``.
        authors: Names for the package's ``authors`` (the zoo asks for at least one).
        license: SPDX identifier of the weights' license (e.g. ``CC-BY-4.0``); none when ``None``.

    Returns:
        ``path``.

    Raises:
        ModelError: bioimageio is not installed, the description is refused, or the model test
            fails (the failing check named; nothing is written then).
    """
    path = Path(path)
    card = model.card
    if path.suffix.lower() != ".zip":
        raise ModelError(f"{path}: a BioImage Model Zoo package is a .zip file; name it like {path.name}.zip")
    require_bioimageio()
    if license is not None:
        check_license(license)  # before any work
    if card.network not in ARCHITECTURES:
        log.warning(
            "network %r: segpipe has no architecture file for it, so the package carries TorchScript weights "
            "only (bioimageio.core, deepImageJ and QuPath run it; `segpipe models import` cannot read it back)",
            card.network,
        )
    raw = raw_test_input(card, sample)
    network = model.load("cpu")
    with torch.no_grad():
        expected = activate(network(torch.from_numpy(preprocess(raw, card.normalization)[None])), n_classes=card.n_classes)
    expected = expected.numpy().astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path, keep_suffix=True) as tmp:  # the packager checks the extension
        with tempfile.TemporaryDirectory(prefix="segpipe-bioimageio-") as work, quiet():
            files = write_files(Path(work), model, network, raw, expected)
            descr = describe(model, files, authors=authors, license=license)
            _save_package(descr, tmp)
        if test:
            _test_package(tmp, path)
    return path


def _save_package(descr, target: Path) -> None:
    from bioimageio.spec import save_bioimageio_package

    try:
        save_bioimageio_package(descr, output_path=target)
    except Exception as err:  # the library reports a description it cannot package in its own exception types
        raise ModelError(f"{target}: cannot write the BioImage Model Zoo package: {one_line(err)}") from None


def _test_package(package: Path, target: Path) -> None:
    """bioimageio.core's model test of ``package``; :class:`ModelError` names the first failing check."""
    from bioimageio.core import test_model

    with quiet():
        summary = test_model(package)
    if summary.status == "passed":
        return
    with contextlib.suppress(Exception):
        log.debug("bioimageio.core model test of %s:\n%s", target, summary.format_md())
    check, problem = first_failure(summary)
    raise ModelError(
        f"{target}: not written: bioimageio.core's model test failed at {check!r}: {problem} "
        "(rerun with -v for its report, or export with --no-test to inspect the package)"
    )
