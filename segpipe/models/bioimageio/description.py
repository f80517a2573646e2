"""The package's bioimageio.spec 0.5 model description (its ``rdf.yaml``)."""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import torch

from segpipe.data.readers.units import normalize_unit
from segpipe.errors import ModelError
from segpipe.models.bioimageio.architecture import ARCHITECTURES, architecture_kwargs
from segpipe.models.bioimageio.preprocessing import preprocessing_steps
from segpipe.models.bioimageio.sizes import halo, min_size, step
from segpipe.models.bioimageio.summary import union_branch
from segpipe.models.card import ModelCard
from segpipe.models.model import Model

INPUT_ID = "raw"
OUTPUT_ID = "probabilities"
#: How far a consumer's output may be from the test output (float differences between machines).
TOLERANCE = {"relative_tolerance": 1e-3, "absolute_tolerance": 1e-4, "mismatched_elements_per_million": 100}
CITATIONS = {
    "unet": (
        "Ronneberger, Fischer and Brox. U-Net: Convolutional Networks for Biomedical Image Segmentation. MICCAI 2015.",
        "10.1007/978-3-319-24574-4_28",
    ),
    "fcn": (
        "Long, Shelhamer and Darrell. Fully Convolutional Networks for Semantic Segmentation. CVPR 2015.",
        "10.1109/CVPR.2015.7298965",
    ),
}


def check_license(license: str) -> None:
    """Refuse ``license`` in one line unless it is an SPDX identifier the format takes (the format's
    own error lists all 600-odd of them), suggesting the nearest where one is close.

    Raises:
        ModelError: ``license`` is no SPDX license identifier.
    """
    from bioimageio.spec.model import v0_5 as spec

    known = typing.get_args(spec.LicenseId.root_model.model_fields["root"].annotation)
    if license in known:
        return
    near = difflib.get_close_matches(license.upper(), [k.upper() for k in known], n=1, cutoff=0.85)
    hint = next((f"; did you mean {k}?" for k in known if near and k.upper() == near[0]), "")
    raise ModelError(f"license {license!r}: not an SPDX license identifier (e.g. CC-BY-4.0, MIT, BSD-3-Clause){hint}")


def describe(model: Model, files: dict[str, Path], *, authors: Sequence[str], license: str | None):
    """The bioimageio.spec 0.5 model description."""
    from bioimageio.spec.model import v0_5 as spec
    from pydantic import ValidationError

    card = model.card
    ndim = card.spatial_dims
    axis_ids = [spec.AxisId(a) for a in "zyx"[3 - ndim :]]
    unit = normalize_unit(card.unit)
    physical = [{"unit": unit, "scale": float(s)} if unit and not card.spacing_guessed else {} for s in card.spacing]
    in_channels = card.channel_names or [f"channel{c}" for c in range(card.in_channels)]
    out_channels = [*card.classes, *(name.replace(" ", "_") for name in card.output_names[card.n_classes :])]
    float32 = spec.EnsureDtypeDescr(kwargs=spec.EnsureDtypeKwargs(dtype="float32"))
    torch_version = spec.Version(torch.__version__.split("+")[0])
    try:
        inputs = spec.InputTensorDescr(
            id=spec.TensorId(INPUT_ID),
            description="raw intensities; normalized per image by the preprocessing",
            axes=[
                spec.BatchAxis(),
                spec.ChannelAxis(channel_names=in_channels),
                *(
                    spec.SpaceInputAxis(id=a, size=spec.ParameterizedSize(min=min_size(card, i), step=step(card, i)), **p)
                    for i, (a, p) in enumerate(zip(axis_ids, physical))
                ),
            ],
            test_tensor=spec.FileDescr(source=files["test_input"]),
            data=spec.IntervalOrRatioDataDescr(type="float32"),
            preprocessing=[float32, *preprocessing_steps(spec, card.normalization, axis_ids), float32],
        )
        outputs = spec.OutputTensorDescr(
            id=spec.TensorId(OUTPUT_ID),
            description="class probabilities (softmax)" + "".join(f", then the {name} map (sigmoid)" for name in card.extra_outputs),
            axes=[
                spec.BatchAxis(),
                spec.ChannelAxis(channel_names=out_channels),
                *(
                    _output_axis(spec, a, halo(card, i), p)
                    for i, (a, p) in enumerate(zip(axis_ids, physical))
                ),
            ],
            test_tensor=spec.FileDescr(source=files["test_output"]),
            data=spec.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
        )
        torchscript = spec.TorchscriptWeightsDescr(
            source=files["torchscript"],
            pytorch_version=torch_version,
            parent="pytorch_state_dict" if "weights" in files else None,
            comment="torch.jit.script of the network with segpipe's output activations",
        )
        state_dict = None
        if "weights" in files:
            state_dict = spec.PytorchStateDictWeightsDescr(
                source=files["weights"],
                architecture=spec.ArchitectureFromFileDescr(
                    source=files["architecture"],
                    callable=spec.Identifier(ARCHITECTURES[card.network]),
                    kwargs=architecture_kwargs(card),
                ),
                pytorch_version=torch_version,
                dependencies=spec.FileDescr(source=files["environment"]),
            )
        cite = CITATIONS.get(card.network)
        timestamp = datetime.fromtimestamp(model.weights.stat().st_mtime, UTC).replace(microsecond=0)
        extra = {"license": spec.LicenseId(license)} if license else {}
        return spec.ModelDescr(
            name=package_name(card),
            description=_description(card),
            timestamp=spec.Datetime(timestamp),
            authors=[spec.Author(name=name) for name in authors],
            cite=[spec.CiteEntry(text=cite[0], doi=spec.Doi(cite[1]))] if cite else [],
            documentation=spec.FileDescr(source=files["documentation"]),
            covers=[spec.FileDescr(source=files["cover"])],
            tags=[
                "segpipe",
                f"{ndim}d",
                "pytorch",
                card.network,
                "instance-segmentation" if card.instances else "semantic-segmentation",
            ],
            inputs=[inputs],
            outputs=[outputs],
            weights=spec.WeightsDescr(pytorch_state_dict=state_dict, torchscript=torchscript),
            config=spec.Config(
                bioimageio=spec.BioimageioConfig(reproducibility_tolerance=[spec.ReproducibilityTolerance(**TOLERANCE)]),
                segpipe=card.model_dump(mode="json"),
            ),
            **extra,
        )
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if not union_branch(p))
        raise ModelError(f"{model.folder}: cannot describe the model for the BioImage Model Zoo: {where}: {first['msg']}") from None


def _output_axis(spec, axis_id, halo: int, physical: dict):
    """An output space axis as large as the input's, with its halo when it has one (the spec wants it positive)."""
    size = spec.SizeReference(tensor_id=spec.TensorId(INPUT_ID), axis_id=axis_id)
    if halo:
        return spec.SpaceOutputAxisWithHalo(id=axis_id, size=size, halo=halo, **physical)
    return spec.SpaceOutputAxis(id=axis_id, size=size, **physical)


def package_name(card: ModelCard) -> str:
    """The package's ``name``: letters, digits, ``_+- ()`` only, 5 to 64 characters."""
    name = re.sub(r"[^A-Za-z0-9_+\- ()]", "-", f"{card.name} {card.network} {card.spatial_dims}D")
    return (name if len(name) >= 5 else f"segpipe {name}")[:64]


def _description(card: ModelCard) -> str:
    kind = "instance segmentation" if card.instances else "semantic segmentation"
    trained = f", trained on {card.training.dataset}" if card.training.dataset else ""
    return f"segpipe {card.network} for {kind} of {', '.join(card.classes[1:])} in {card.spatial_dims}D images{trained}."
