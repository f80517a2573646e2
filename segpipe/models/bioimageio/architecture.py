"""The network with segpipe's activations: scripted for the TorchScript weights, and as the architecture
file (source and keyword arguments) of the ``pytorch_state_dict`` weights."""

from __future__ import annotations

import inspect
import json

import torch

from segpipe.errors import ModelError
from segpipe.models.card import ModelCard

ARCHITECTURE_FILE = "segpipe_architecture.py"
#: Networks whose architecture a package carries (``pytorch_state_dict``); others get TorchScript only.
ARCHITECTURES = {"unet": "SegpipeUNet", "fcn": "SegpipeFCN"}


class Probabilities(torch.nn.Module):
    """A network with segpipe's activations applied (scripted for the TorchScript weights)."""

    def __init__(self, network: torch.nn.Module, n_classes: int):
        super().__init__()
        self.network = network
        self.n_classes = n_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _probabilities_fn(self.network(x), self.n_classes)


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
        'the rest (the distance, boundary and flow maps of instance models).',
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
    """Softmax over the first ``n_classes`` channels; the other channels (distance, boundary, flow) through a sigmoid."""
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
