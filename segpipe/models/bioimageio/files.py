"""The files of a package, written in a work folder before they are packaged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from segpipe.errors import ModelError
from segpipe.models.bioimageio.architecture import (
    ARCHITECTURE_FILE,
    ARCHITECTURES,
    Probabilities,
    architecture_source,
)
from segpipe.models.bioimageio.readme import package_readme
from segpipe.models.bioimageio.summary import one_line
from segpipe.models.model import Model


def write_files(work: Path, model: Model, network: torch.nn.Module, raw: np.ndarray, expected: np.ndarray) -> dict[str, Path]:
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
        scripted = torch.jit.script(Probabilities(network, card.n_classes).eval())
    except Exception as err:  # TorchScript reports what it cannot compile in many exception types
        raise ModelError(f"{model.folder}: network {card.network!r} cannot be compiled to TorchScript: {one_line(err)}") from None
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
