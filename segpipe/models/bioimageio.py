"""BioImage Model Zoo packages: a segpipe model as one zip others can run, and back.

::

    export_model(Model.open("runs/bbbc007/model"), Path("bbbc007.zip"))   # bioimageio.spec 0.5 zip
    import_model(Path("bbbc007.zip"), Path("models/bbbc007"))            # a segpipe model folder again

A package holds the weights twice: ``pytorch_state_dict`` (segpipe's plain weights and an
architecture file, ``segpipe_architecture.py``, that subclasses the network segpipe trains, so
the same weights load into both) and ``torchscript`` (the network scripted, which deepImageJ and
QuPath run without Python). Both output probabilities: the activations segpipe applies (softmax
over the classes, a sigmoid on the distance channel of instance models) are part of the
network. The input is the raw image; its ``preprocessing`` is segpipe's normalization in the
format's terms. ``config.segpipe`` holds the whole model card, which is how a package comes back
into segpipe; instance separation (a watershed on the distance channel) stays segpipe's own.

Test tensors are a raw input (synthetic, seeded, unless a real image is given) and the output of
segpipe's network on it; ``export_model(test=True)`` runs bioimageio.core's model test on the
zip, offline, before it is put in place.

bioimageio.core and bioimageio.spec are an optional extra, imported inside the functions.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import io
import itertools
import json
import logging
import math
import re
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from segpipe.data.readers.units import normalize_unit, sizes_text
from segpipe.errors import ModelError
from segpipe.inference.memory import activate
from segpipe.inference.normalize import NormalizationSpec, normalize, percentile_normalize
from segpipe.models.card import ModelCard
from segpipe.models.unet import LEVELS, axis_divisors
from segpipe.models.model import MODEL_FILE, Model, network_from_card, save_model
from segpipe.temporary import replacing

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install -c constraints.txt 'segpipe[bioimageio]'"
ARCHITECTURE_FILE = "segpipe_architecture.py"
INPUT_ID = "raw"
OUTPUT_ID = "probabilities"
#: Networks whose architecture a package carries (``pytorch_state_dict``); others get TorchScript only.
ARCHITECTURES = {"unet": "SegpipeUNet", "fcn": "SegpipeFCN"}
#: Spatial sizes a package accepts are ``min + n * STEP`` (four poolings; the FCN pads itself);
#: an axis a U-Net pools fewer times (``pools`` on the card) steps by the product of its pools.
STEP = 2**LEVELS  # 16
#: Output border consumers crop when they tile (pixels per side), per 2D/3D.
HALO = {2: 16, 3: 8}
#: Largest synthetic test image per axis, and largest crop of a real one.
SYNTHETIC_SIZE = {2: 128, 3: 48}
SAMPLE_SIZE = {2: 256, 3: 64}
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


# ----------------------------------------------------------------------------------------- export


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
    _require_bioimageio()
    if card.network not in ARCHITECTURES:
        log.warning(
            "network %r: segpipe has no architecture file for it, so the package carries TorchScript weights "
            "only (bioimageio.core, deepImageJ and QuPath run it; `segpipe models import` cannot read it back)",
            card.network,
        )
    raw = _test_input(card, sample)
    network = model.load("cpu")
    with torch.no_grad():
        expected = activate(network(torch.from_numpy(_preprocess(raw, card.normalization)[None])), n_classes=card.n_classes)
    expected = expected.numpy().astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path, keep_suffix=True) as tmp:  # the packager checks the extension
        with tempfile.TemporaryDirectory(prefix="segpipe-bioimageio-") as work, _quiet():
            files = _write_files(Path(work), model, network, raw, expected)
            descr = _describe(model, files, authors=authors, license=license)
            _save_package(descr, tmp)
        if test:
            _test_package(tmp, path)
    return path


def _test_input(card: ModelCard, sample: np.ndarray | None) -> np.ndarray:
    """The raw test input ``(C, *spatial)`` as float32: the sample cropped, or a synthetic image."""
    ndim = card.spatial_dims
    if sample is None:
        shape = tuple(_grid_size(min(p, SYNTHETIC_SIZE[ndim]), card, a) for a, p in enumerate(card.patch_size))
        return synthetic_image(shape, card.in_channels, card.normalization)
    sample = check_sample(card, sample)
    keep = [_grid_size(min(s, SAMPLE_SIZE[ndim]), card, a, up=False) for a, s in enumerate(sample.shape[1:])]
    return np.ascontiguousarray(sample[(slice(None), *_busiest_crop(sample[0], keep))], dtype=np.float32)


def check_sample(card: ModelCard, sample: np.ndarray, *, name: str = "test sample") -> np.ndarray:
    """``sample`` as an array, if it can show ``card``'s model at work: ``(C, *spatial)``, large
    enough, finite, and not one value throughout.

    Raises:
        ModelError: Naming ``name`` and what is wrong.
    """
    ndim, sample = card.spatial_dims, np.asarray(sample)
    if sample.ndim != ndim + 1 or sample.shape[0] != card.in_channels:
        raise ModelError(
            f"{name}: has shape {sample.shape}; model {card.name!r} needs ({card.in_channels}, "
            f"{', '.join('...' for _ in range(ndim))}): channels first, {ndim} spatial axes"
        )
    lows = [min_size(card, a) for a in range(ndim)]
    if any(s < low for s, low in zip(sample.shape[1:], lows)):
        raise ModelError(f"{name}: {list(sample.shape[1:])} pixels is too small a sample: at least {lows} pixels")
    if np.issubdtype(sample.dtype, np.floating) and not np.isfinite(sample).all():
        raise ModelError(f"{name}: holds {int(np.count_nonzero(~np.isfinite(sample)))} NaN or Inf values; a sample must be finite")
    if sample.min() == sample.max():
        raise ModelError(f"{name}: is {sample.flat[0]} throughout; a sample needs objects for the package's test to show the model")
    return sample


def _busiest_crop(channel: np.ndarray, keep: Sequence[int]) -> tuple[slice, ...]:
    """The crop of size ``keep`` with the widest intensity range (1st to 99.8th percentile), among
    crops at half-crop steps: a crop of empty background would test the network on noise alone."""
    starts = [sorted({*range(0, s - k + 1, max(1, k // 2)), s - k}) for s, k in zip(channel.shape, keep)]
    best, best_range = None, -1.0
    for corner in itertools.product(*starts):
        box = tuple(slice(c, c + k) for c, k in zip(corner, keep))
        low, high = np.percentile(channel[box], (1.0, 99.8))
        if high - low > best_range:
            best, best_range = box, float(high - low)
    return best


def min_size(card: ModelCard, axis: int) -> int:
    """The smallest input along spatial ``axis`` a package accepts.

    Room for the halo and for the U-Net's four poolings (32: 2 pixels at its bottom in 3D); an
    axis pooled fewer times (a stack of a few slices) takes one step; for the FCN, which pads to
    a multiple of 32, 48 so that its stride-32 maps have more than one voxel (group normalization
    of one channel per group fails on a single voxel).
    """
    if card.network == "fcn":
        return 48
    if step(card, axis) < STEP:
        return step(card, axis)
    return {2: 48, 3: 32}[card.spatial_dims]


def step(card: ModelCard, axis: int) -> int:
    """The step of the input sizes along spatial ``axis``: the product of the U-Net's pools there."""
    if card.network != "unet":
        return STEP
    return axis_divisors(card.network_options.get("pools"), card.spatial_dims)[axis]


def halo(card: ModelCard, axis: int) -> int:
    """Output pixels to crop off each side along ``axis`` when tiling; none on a thin axis (one window spans it)."""
    return HALO[card.spatial_dims] if step(card, axis) >= STEP else 0


def _grid_size(size: int, card: ModelCard, axis: int, *, up: bool = True) -> int:
    """The input size ``min_size + n * step`` along ``axis`` nearest ``size`` (the next up, or the next down)."""
    low = min_size(card, axis)
    n = (max(size, low) - low) / step(card, axis)
    return low + step(card, axis) * (math.ceil(n) if up else math.floor(n))


def _sizes_text(card: ModelCard, axes: Sequence[str]) -> str:
    """The input sizes and output halo, per axis where the axes differ, for the package's documentation."""
    mins, steps, halos = ([f(card, a) for a in range(card.spatial_dims)] for f in (min_size, step, halo))
    if len(set(zip(mins, steps, halos))) == 1:
        return (
            f"Spatial sizes {mins[0]} + n x {steps[0]} pixels per axis; crop {halos[0]} pixels off each side "
            "of the output when tiling."
        )
    each = "; ".join(f"{a}: {m} + n x {st}, crop {h}" for a, m, st, h in zip(axes, mins, steps, halos))
    return f"Spatial sizes per axis ({each} pixels off each side of the output when tiling)."


def synthetic_image(shape: Sequence[int], channels: int, spec: NormalizationSpec, *, seed: int = 0) -> np.ndarray:
    """A seeded raw image of bright blobs on a dim, noisy background, ``(channels, *shape)`` float32.

    Intensities suit the normalization: 100..1100 for the per-image methods, the window's range for CT.
    """
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    planes = []
    for _ in range(channels):
        blobs = np.zeros(shape, np.float32)
        for _ in range(8):
            centre = [rng.uniform(0, s) for s in shape]
            radius = rng.uniform(3.0, max(4.0, min(shape) / 6))
            blobs += np.exp(-sum((g - c) ** 2 for g, c in zip(grids, centre)) / (2 * radius**2))
        planes.append(np.clip(blobs, 0, 1) + rng.normal(0, 0.03, shape))
    unit = np.stack(planes)
    if spec.method == "ct":
        low, high = spec.window
        return (low + (high - low) * unit).astype(np.float32)
    return (100 + 1000 * unit).astype(np.float32)


def _fill_text(norm: NormalizationSpec) -> str:
    """What the package cannot say of segpipe's percentiles taken outside the fill, when the model takes them so."""
    if not norm.skip_fill:
        return ""
    return (
        " segpipe takes the percentiles of the pixels outside each channel's fill (flat patches, 7 pixels a side, "
        "at the channel's least value, such as the zero fill around a stitched mosaic) and reads values below the "
        "low percentile as it (so the fill reads as background); `scale_range` takes every pixel and keeps values "
        "below, so on an image with more fill than the low percentile's share consumers that only run the package "
        "map the fill to 0 and the real background above it, and on others the darkest pixels differ slightly."
    )


def _floor_text(norm: NormalizationSpec) -> str:
    """What the package cannot say of segpipe's range floor, when the model has one."""
    if not norm.min_range:
        return ""
    floors = ", ".join(f"{v:g}" for v in norm.min_range)
    return (
        f" segpipe also never divides by less than {floors} (per channel: a quarter of the training images' "
        f"typical range{', for ' + norm.floor_for + ' images like them' if norm.floor_for else ''}), so that a nearly empty, noisy field is not stretched into objects; `scale_range` has "
        "no such floor, so on such fields consumers that only run the package stretch the noise and may find "
        "objects segpipe does not."
    )


def _preprocess(raw: np.ndarray, spec: NormalizationSpec) -> np.ndarray:
    """The network input the package's ``preprocessing`` makes of ``raw``.

    ``ct``: segpipe's own normalization (the package describes it exactly). ``percentile``:
    ``scale_range``'s, every pixel's percentiles and no range floor, which differs from segpipe's
    where the card has ``skip_fill`` or ``min_range`` (the package's README says how); ``zscore``:
    what bioimageio.core computes, which differs too (see :func:`_zscore_as_bioimageio`). The
    package's test outputs are made from this, so that consumers running the package reproduce them.
    """
    if spec.method == "zscore":
        return _zscore_as_bioimageio(raw, low=spec.low, high=spec.high)
    if spec.method == "percentile":
        return percentile_normalize(raw, low=spec.low, high=spec.high)
    return normalize(raw, spec)


def _zscore_as_bioimageio(raw: np.ndarray, *, low: float, high: float, eps: float = 1e-6) -> np.ndarray:
    """bioimageio.core 0.11's ``clip`` (percentiles) then ``zero_mean_unit_variance``, per channel.

    segpipe clips to the percentiles and takes the mean and deviation of the clipped image;
    bioimageio.core measures every statistic on the unprocessed input, so its mean and
    deviation are those of the unclipped image (and its clip percentiles use ``inverted_cdf``).
    """
    out = np.empty(raw.shape, np.float32)
    for c, channel in enumerate(raw.astype(np.float32)):
        lo, hi = np.percentile(channel, (low, high), method="inverted_cdf")
        mean, std = channel.mean(dtype=np.float64), channel.std(dtype=np.float64)
        out[c] = (np.clip(channel, lo, hi) - mean) / (std + eps)
    return out


class _Probabilities(torch.nn.Module):
    """A network with segpipe's activations applied (scripted for the TorchScript weights)."""

    def __init__(self, network: torch.nn.Module, n_classes: int):
        super().__init__()
        self.network = network
        self.n_classes = n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _probabilities_fn(self.network(x), self.n_classes)


def _write_files(work: Path, model: Model, network: torch.nn.Module, raw: np.ndarray, expected: np.ndarray) -> dict[str, Path]:
    """The package's files, in ``work``."""
    card = model.card
    files = {
        "test_input": work / "test_input.npy",
        "test_output": work / "test_output.npy",
        "torchscript": work / "weights_torchscript.pt",
        "documentation": work / "README.md",
        "cover": work / "cover.png",
    }
    np.save(files["test_input"], raw[None])
    np.save(files["test_output"], expected)
    try:
        scripted = torch.jit.script(_Probabilities(network, card.n_classes).eval())
    except Exception as err:  # TorchScript reports what it cannot compile in many exception types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"{model.folder}: network {card.network!r} cannot be compiled to TorchScript: {first}") from None
    scripted.save(str(files["torchscript"]))
    if card.network in ARCHITECTURES:
        files["weights"] = work / "weights.pt"
        files["architecture"] = work / ARCHITECTURE_FILE
        files["environment"] = work / "environment.yaml"
        torch.save(model.state_dict(), files["weights"])
        files["architecture"].write_text(architecture_source(card.network))
        files["environment"].write_text(_environment())
    files["documentation"].write_text(package_readme(card))
    _write_cover(files["cover"], raw, expected[0])
    return files


def architecture_source(network: str) -> str:
    """The architecture file of a package: the network segpipe trains, with its activations applied.

    It imports only torch and MONAI (consumers run it without segpipe): the U-Net is MONAI's
    ``BasicUNet``, the FCN's code is copied from :mod:`segpipe.models.fcn`. The class
    subclasses the trained network, so segpipe's ``state_dict`` keys fit it unchanged.
    """
    head = [
        '"""Architecture of a segpipe model, for its BioImage Model Zoo package (needs torch and MONAI only).',
        "",
        "The class subclasses the network segpipe trained, so segpipe's weights load unchanged, and its",
        "forward pass returns probabilities: softmax over the first ``n_classes`` channels, a sigmoid on",
        'the rest (the distance map of instance models).',
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import Literal",
        "",
        "import torch",
        "import torch.nn.functional as F",
        "from monai.networks.blocks import Convolution",
        "from monai.networks.layers import Conv, Pool",
        "from monai.networks.nets import BasicUNet",
        "from torch import nn",
        "",
        "",
        inspect.getsource(_probabilities_fn).rstrip(),
    ]
    if network == "unet":
        from segpipe.models import unet

        body = [
            inspect.getsource(unet.set_pools),
            "",
            _wrapper("SegpipeUNet", "BasicUNet", pools=True),
        ]
    elif network == "fcn":
        from segpipe.models import fcn

        body = [
            f"FCN_STRIDE = {fcn.FCN_STRIDE}",
            "",
            "",
            inspect.getsource(fcn._stage),
            "",
            inspect.getsource(fcn._upsample),
            "",
            inspect.getsource(fcn.FCN),
            "",
            _wrapper("SegpipeFCN", "FCN"),
        ]
    else:
        raise ModelError(f"segpipe has no architecture file for network {network!r}")
    return "\n".join(head + ["", ""] + body).rstrip() + "\n"


def _probabilities_fn(logits: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Softmax over the first ``n_classes`` channels; the other channels (a distance map) through a sigmoid."""
    probs = torch.softmax(logits[:, :n_classes], dim=1)
    if logits.shape[1] == n_classes:
        return probs
    return torch.cat([probs, torch.sigmoid(logits[:, n_classes:])], dim=1)


def _wrapper(name: str, base: str, *, pools: bool = False) -> str:
    signature = "n_classes: int, pools: list | None = None, **kwargs" if pools else "n_classes: int, **kwargs"
    set_pools = "        if pools is not None:  # per-axis pooling factors of each level\n            set_pools(self, pools)\n"
    return (
        f"class {name}({base}):\n"
        f'    """segpipe\'s {base} (keyword arguments as segpipe builds it) returning probabilities."""\n'
        "\n"
        f"    def __init__(self, {signature}):\n"
        "        super().__init__(**kwargs)\n"
        + (set_pools if pools else "")
        + "        self.n_classes = int(n_classes)\n"
        "\n"
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
        "        return _probabilities_fn(super().forward(x), self.n_classes)\n"
    )


def architecture_kwargs(card: ModelCard) -> dict:
    """Keyword arguments of the architecture file's class: the network as segpipe builds it."""
    base = {"spatial_dims": card.spatial_dims, "in_channels": card.in_channels, "out_channels": card.out_channels}
    options = json.loads(json.dumps(card.network_options))  # tuples to lists: YAML-able
    if card.network == "unet":  # segpipe.models.unet: BasicUNet with transposed-convolution upsampling
        from segpipe.models.unet import norm_of, unet

        default = inspect.signature(unet).parameters["features"].default
        options = {"features": list(options.get("features", default)), "upsample": "deconv"}
        if card.network_options.get("pools") is not None:
            options["pools"] = [list(level) for level in card.network_options["pools"]]
        if (norm := norm_of(card.network_options)) != "instance":
            options["norm"] = norm  # BasicUNet's norm: a layer name or (name, options)
    return {"n_classes": card.n_classes, **base, **options}


def _output_axis(spec, axis_id, halo: int, physical: dict):
    """An output space axis as large as the input's, with its halo when it has one (the spec wants it positive)."""
    size = spec.SizeReference(tensor_id=spec.TensorId(INPUT_ID), axis_id=axis_id)
    if halo:
        return spec.SpaceOutputAxisWithHalo(id=axis_id, size=size, halo=halo, **physical)
    return spec.SpaceOutputAxis(id=axis_id, size=size, **physical)


def _environment() -> str:
    import monai

    return (
        "name: segpipe-model\n"
        "channels: [conda-forge, nodefaults]\n"
        "dependencies:\n"
        f"  - pytorch=={torch.__version__.split('+')[0]}\n"
        f"  - monai=={monai.__version__}\n"
        "  - pip\n"
    )


def package_readme(card: ModelCard) -> str:
    """The package's documentation: what goes in, what comes out, how it was trained and validated."""
    training = card.training
    ndim = card.spatial_dims
    axes = "zyx"[3 - ndim :]
    outputs = [f"- `{name}`: probability of class {name!r} (softmax over the classes)" for name in card.classes]
    if "distance" in card.extra_outputs:
        outputs.append(
            "- `distance`: the predicted distance to the object's border, normalized to 1 at each object's "
            "centre (a sigmoid)"
        )
    if "boundary" in card.extra_outputs:
        outputs.append("- `boundary`: the probability that a pixel lies on a border between two touching objects (a sigmoid)")
    if "flow" in card.extra_outputs:
        outputs.append(
            f"- `flow_{axes[0]}` ... `flow_{axes[-1]}`: per axis, `(v + 1) / 2` for the unit vector `v` from a pixel "
            "towards its object's centre (a sigmoid; 0.5 on background)"
        )
    if card.instances:
        how_split = (
            "every foreground pixel follows the flow channels for 200 steps and pixels whose paths end together "
            "form one object"
            if card.instance_params().relief == "flow"
            else "seeds are the parts of the distance channel above another (or its h-maxima), and a seeded "
            "watershed on the distance channel splits touching objects"
        )
        separation = (
            "Objects are separated by segpipe's own post-processing, not by this package: foreground is "
            f"where the object probability is above a threshold, {how_split}. The "
            "settings tuned on the validation images are in `config.segpipe.postprocess` "
            f"(`{card.instance_params().model_dump_json()}`); `segpipe segment` applies them after "
            "`segpipe models import`. Consumers that only run the network get the probabilities and the "
            "distance map."
        )
    else:
        separation = "The class map is the most probable class per pixel (argmax over the channels)."
    norm = card.normalization
    if norm.method == "percentile":
        how = (
            f"per image and channel, the intensity percentiles {norm.low:g} and {norm.high:g} are mapped to 0 and 1 "
            f"(not clipped): `scale_range` with `min_percentile: {norm.low:g}`, `max_percentile: {norm.high:g}`, "
            "as segpipe normalizes (the same up to float rounding; segpipe estimates percentiles from a regular "
            "subsample above 2 megapixels per channel, so on larger images the two differ slightly)."
            + _floor_text(norm)
            + _fill_text(norm)
        )
    elif norm.method == "zscore":
        how = (
            f"segpipe clips each channel to its percentiles {norm.low:g} and {norm.high:g}, then subtracts the mean "
            "and divides by the standard deviation of the clipped image. The package says `clip` (percentiles) "
            "then `zero_mean_unit_variance`, which is only an approximation: bioimageio.core 0.11 computes "
            "the mean and deviation of the unclipped image (and its clip percentiles use the `inverted_cdf` "
            "method), so inputs differ slightly from segpipe's, most where bright outliers were clipped. The "
            "test output follows the package's preprocessing, not segpipe's. For results identical to "
            "segpipe's, run the model with `segpipe segment` after `segpipe models import`."
        )
        if norm.nonzero:
            how += (
                " This model's percentiles, mean and deviation are those of the nonzero voxels only (its "
                "training images have a background of exactly 0), which the package cannot say: on such "
                "images its inputs differ from segpipe's by much more than rounding."
            )
    else:
        how = (
            f"intensities (absolute units, e.g. Hounsfield) are clipped to the window {list(norm.window)}, then "
            f"`(x - {norm.mean:g}) / {norm.std:g}` (mean and deviation of the training foreground): `clip` then "
            "`scale_linear`, as segpipe normalizes (the same up to float rounding)."
        )
    spacing = sizes_text(card.spacing)
    scores = [f"- {key}: {value}" for key, value in training.validation.items()] or [
        "- none recorded in the model card (segpipe records a validation SEG for instance models)"
    ]
    networks = {"unet": "U-Net (MONAI BasicUNet)", "fcn": "FCN-8s"}
    channels = card.channel_names or [f"channel{c}" for c in range(card.in_channels)]
    weights = (
        "`torchscript` (the network scripted with its activations; what deepImageJ and QuPath run) and "
        f"`pytorch_state_dict` (segpipe's weights with `{ARCHITECTURE_FILE}`, which needs torch and MONAI)"
        if card.network in ARCHITECTURES
        else "`torchscript` only (segpipe has no architecture file for this network)"
    )
    lines = [
        f"# {card.name}: segpipe {networks.get(card.network, card.network)}, {ndim}D",
        "",
        f"Segments {', '.join(card.classes[1:])} ({'instances' if card.instances else 'semantic classes'}) "
        f"in {ndim}D images; exported by segpipe, which trained it.",
        "",
        "## Input",
        "",
        f"`{INPUT_ID}`: raw intensities, axes batch, channel, {', '.join(axes)}; "
        f"{card.in_channels} channel(s): {', '.join(channels)}. {_sizes_text(card, axes)}",
        "",
        f"Normalization (the package's `preprocessing`): {how}",
        "",
        (f"Pixel size the model was trained at: not known (its training images' files gave none; {spacing} "
         f"{card.unit} was taken): give it images at their own pixels, its objects about as many pixels across as "
         "in its training images." if card.spacing_guessed else
         f"Pixel size the model was trained at: {spacing} {card.unit} ({', '.join(axes)}); images at "
         "another pixel size should be resampled to it first (`segpipe segment` does)."),
        "",
        "## Output",
        "",
        f"`{OUTPUT_ID}`: float32 in 0..1, the input's size, one channel each:",
        "",
        *outputs,
        "",
        separation,
        "",
        "## Training and validation",
        "",
        f"- trained on: {training.dataset or 'not recorded'}"
        + (f" (dataset fingerprint {training.dataset_fingerprint})" if training.dataset_fingerprint else ""),
        f"- epochs: {training.epochs if training.epochs is not None else 'not recorded'}"
        + (f", kept at epoch {training.best_epoch}" if training.best_epoch is not None else "")
        + (f"; training ended by: {training.ended_by}" if training.ended_by else ""),
        f"- training window: {' x '.join(map(str, card.patch_size))} pixels",
        "",
        ("Scores on the training images (from the model card; the run had no validation images, so they are "
         "optimistic: the network learnt these images):" if training.scored_on_training else
         "Validation scores (from the model card):"),
        "",
        *scores,
        "",
        "## Weights and use",
        "",
        f"Weights: {weights}. Both include the activations, so no postprocessing is described.",
        "",
        "In segpipe: `segpipe models import PACKAGE.zip --to FOLDER`, then `segpipe segment --model FOLDER IMAGES`.",
        "The whole segpipe model card is in `config.segpipe`.",
        "",
    ]
    return "\n".join(lines)


def _write_cover(path: Path, raw: np.ndarray, probs: np.ndarray) -> None:
    """Input (first channel) beside the output (first three channels as RGB), the middle plane of 3D."""
    from PIL import Image

    def plane(a: np.ndarray) -> np.ndarray:
        return a[:, a.shape[1] // 2] if a.ndim == 4 else a

    image, out = plane(raw)[0], plane(probs)
    lo, hi = np.percentile(image, (1, 99.8))
    grey = np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1)
    left = np.repeat(grey[..., None], 3, axis=-1)
    right = np.zeros((*out.shape[1:], 3), np.float32)
    for c in range(min(3, out.shape[0])):
        right[..., c] = out[c]
    rgb = (np.concatenate([left, right], axis=1) * 255).astype(np.uint8)
    scale = max(1, 512 // rgb.shape[1])
    Image.fromarray(rgb).resize((rgb.shape[1] * scale, rgb.shape[0] * scale), Image.NEAREST).save(path)


def _describe(model: Model, files: dict[str, Path], *, authors: Sequence[str], license: str | None):
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
            preprocessing=[float32, *_preprocessing(spec, card.normalization, axis_ids), float32],
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
        where = ".".join(str(p) for p in first["loc"] if not _union_branch(p))
        raise ModelError(f"{model.folder}: cannot describe the model for the BioImage Model Zoo: {where}: {first['msg']}") from None


def _preprocessing(spec, norm: NormalizationSpec, axes) -> list:
    """segpipe's normalization as bioimageio.spec preprocessing steps (per sample and channel)."""
    if norm.method == "percentile":
        kwargs = spec.ScaleRangeKwargs(axes=axes, min_percentile=norm.low, max_percentile=norm.high, eps=1e-6)
        return [spec.ScaleRangeDescr(kwargs=kwargs)]
    if norm.method == "zscore":  # approximate: see _zscore_as_bioimageio
        return [
            spec.ClipDescr(kwargs=spec.ClipKwargs(axes=axes, min_percentile=norm.low, max_percentile=norm.high)),
            spec.ZeroMeanUnitVarianceDescr(kwargs=spec.ZeroMeanUnitVarianceKwargs(axes=axes, eps=1e-6)),
        ]
    std = max(float(norm.std), 1e-6)
    return [
        spec.ClipDescr(kwargs=spec.ClipKwargs(min=float(norm.window[0]), max=float(norm.window[1]))),
        spec.ScaleLinearDescr(kwargs=spec.ScaleLinearKwargs(gain=1.0 / std, offset=-float(norm.mean) / std)),
    ]


def package_name(card: ModelCard) -> str:
    """The package's ``name``: letters, digits, ``_+- ()`` only, 5 to 64 characters."""
    name = re.sub(r"[^A-Za-z0-9_+\- ()]", "-", f"{card.name} {card.network} {card.spatial_dims}D")
    return (name if len(name) >= 5 else f"segpipe {name}")[:64]


def _description(card: ModelCard) -> str:
    kind = "instance segmentation" if card.instances else "semantic segmentation"
    trained = f", trained on {card.training.dataset}" if card.training.dataset else ""
    return f"segpipe {card.network} for {kind} of {', '.join(card.classes[1:])} in {card.spatial_dims}D images{trained}."


def _save_package(descr, target: Path) -> None:
    from bioimageio.spec import save_bioimageio_package

    try:
        save_bioimageio_package(descr, output_path=target)
    except Exception as err:  # the library reports a description it cannot package in its own exception types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"{target}: cannot write the BioImage Model Zoo package: {first}") from None


def _test_package(package: Path, target: Path) -> None:
    """bioimageio.core's model test of ``package``; :class:`ModelError` names the first failing check."""
    from bioimageio.core import test_model

    with _quiet():
        summary = test_model(package)
    if summary.status == "passed":
        return
    with contextlib.suppress(Exception):
        log.debug("bioimageio.core model test of %s:\n%s", target, summary.format_md())
    check, problem = _first_failure(summary)
    raise ModelError(
        f"{target}: not written: bioimageio.core's model test failed at {check!r}: {problem} "
        "(rerun with -v for its report, or export with --no-test to inspect the package)"
    )


# ----------------------------------------------------------------------------------------- import


def import_model(package: Path, folder: Path) -> Model:
    """Read a package written by :func:`export_model` into a new segpipe model folder.

    The card comes from ``config.segpipe`` (validated as a :class:`ModelCard`); the weights from
    the ``pytorch_state_dict`` entry, read with ``torch.load(weights_only=True)``: nothing in a
    package runs. Every file's SHA-256 is checked against the description.

    Raises:
        ModelError: bioimageio is not installed; the zip is damaged, misses a file or a file's hash
            differs; it was not made by segpipe; or ``folder`` already holds a model.
    """
    package, folder = Path(package), Path(folder)
    if (folder / MODEL_FILE).exists():
        raise ModelError(f"{folder}: already holds a model; import into a new folder")
    with tempfile.TemporaryDirectory(prefix="segpipe-import-") as scratch:
        readable = _as_flat_zip(package, Path(scratch) / "package.zip")
        _check_zip(readable, shown=package)
        _require_bioimageio()
        with _quiet():  # the description holds the zip and files bioimageio leaves open: all released in here
            outcome = _read_package(readable)
    if isinstance(outcome, str):
        raise ModelError(outcome.replace(str(readable), str(package)))
    card, state = outcome
    return save_model(folder, state, card)


#: The names a package's description file has (the newer name first).
DESCRIPTION_NAMES = ("bioimageio.yaml", "rdf.yaml")


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
            return f"{package}: not a BioImage Model Zoo package ({_one_line(err)})"
        if isinstance(descr, InvalidDescr):
            return f"{package}: invalid BioImage Model Zoo package: {_first_error(descr.validation_summary, package)}"
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
            return f"{package}: {name}: {_one_line(err)}"
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # pickle refusals and damaged files alike
        return f"{package}: {name}: not plain weights ({_one_line(err)})"
    if not isinstance(state, dict):
        return f"{package}: {name}: not a state dict"
    try:
        network_from_card(card).load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as err:
        return f"{package}: {name}: the weights do not fit the card's network: {_one_line(err)}"
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
        raise ModelError(f"{shown}: not a readable zip file ({_one_line(err)})") from None
    with archive:
        for member in archive.infolist():
            try:
                with archive.open(member) as handle:
                    while handle.read(1 << 20):
                        pass
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as err:
                raise ModelError(f"{shown}: damaged zip file: {member.filename} cannot be read ({_one_line(err)})") from None


# ----------------------------------------------------------------------------------------- shared


def _require_bioimageio() -> None:
    try:
        import bioimageio.core  # noqa: F401
        import bioimageio.spec  # noqa: F401
    except ImportError as err:
        raise ModelError(
            f"BioImage Model Zoo packages need the optional bioimageio packages ({err.name} is missing): {INSTALL_HINT}"
        ) from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """bioimageio's log lines off; torch's deprecation notices for TorchScript (which the format
    needs) and the ResourceWarnings of the files bioimageio.spec 0.5.12 leaves open when it hashes
    them (``FileDescr.validate_sha256``) not shown."""
    from loguru import logger

    logger.disable("bioimageio")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=r"unclosed file", category=ResourceWarning)
            try:
                yield
            finally:
                gc.collect()  # the leaked files of reference cycles closed here, while the filter holds
    finally:
        logger.enable("bioimageio")


def _first_failure(summary) -> tuple[str, str]:
    """The first failed check of a validation summary and its first error."""
    for detail in summary.details:
        if detail.status == "failed":
            problem = _entry_line(detail.errors[0]) if detail.errors else "failed"
            return detail.name, problem
    return "status", summary.status


def _first_error(summary, package: Path | None = None) -> str:
    for detail in summary.details:
        if detail.errors:
            return _entry_line(detail.errors[0], package)
    return f"status {summary.status}"


def _entry_line(entry, package: Path | None = None) -> str:
    """One line for a validation error: where, and what, with paths inside the package as member names."""
    where = ".".join(str(p) for p in entry.loc if not _union_branch(p))
    message = _one_line(entry.msg).replace(":zipfile:/", "").removeprefix("Value error, ")
    if package is not None:
        message = message.replace(f"{package}/", "")
    message = re.sub(r"\b([0-9a-f]{12})[0-9a-f]{52}\b", r"\1...", message)  # shorten SHA-256 hex digests
    if entry.type == "FileNotFoundError":
        message = f"{message}: missing from the package"
    return f"{where}: {message}" if where else message


def _union_branch(part) -> bool:
    """Pydantic's names of the union branch it tried (``function-after[...]``, ``ArchitectureFromFileDescr``)."""
    text = str(part)
    return "[" in text or (text[:1].isupper() and text.isidentifier())


def _file_name(source) -> str:
    return str(source).replace(":zipfile:", "").rsplit("/", 1)[-1]


def _one_line(err) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
