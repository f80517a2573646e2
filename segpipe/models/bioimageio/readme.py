"""The package's documentation (its README): what goes in, what comes out, how it was trained and validated."""

from __future__ import annotations

from segpipe.data.readers.units import sizes_text
from segpipe.models.bioimageio.architecture import ARCHITECTURE_FILE, ARCHITECTURES
from segpipe.models.bioimageio.description import INPUT_ID, OUTPUT_ID
from segpipe.models.bioimageio.preprocessing import fill_text, floor_text
from segpipe.models.bioimageio.sizes import input_sizes_text
from segpipe.models.card import ModelCard


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
            "maps of the channels listed above."
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
            + floor_text(norm)
            + fill_text(norm)
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
        f"{card.in_channels} channel(s): {', '.join(channels)}. {input_sizes_text(card, axes)}",
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
