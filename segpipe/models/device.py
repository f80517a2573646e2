"""Where a network runs."""

from __future__ import annotations

import torch

from segpipe.errors import InputError


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available; ``cpu``, ``cuda`` and ``cuda:N`` are taken as they are.

    Raises:
        InputError: Any other name, or CUDA asked for where there is none.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device != "cpu" and not (device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        raise InputError(f"device {device!r}: use auto, cpu, cuda or cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r}: this machine has no CUDA GPU (use auto or cpu)")
    return torch.device(device)
