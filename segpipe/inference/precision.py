"""The precision networks run in when ``InferenceParams.amp`` is on: autocast on CUDA (bfloat16 where
supported, else float16), and bfloat16 on CPUs with Intel AMX tiles (Sapphire Rapids and later).

On such CPUs oneDNN runs convolutions in bfloat16 on the matrix units: a small 2D U-Net
predicted a 512x512 field in 0.27 s on one core against 0.38 s in float32
(``benchmarks/RESULTS.md``). Elsewhere bfloat16 is emulated and slower, so it is not used.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

#: The CPU flag (``/proc/cpuinfo``) of the matrix units' bfloat16 instructions.
AMX_FLAG = "amx_bf16"


def has_amx(flags: set[str]) -> bool:
    """Whether CPU ``flags`` (as ``/proc/cpuinfo`` lists them) include AMX bfloat16."""
    return AMX_FLAG in flags


@functools.cache
def cpu_bfloat16() -> bool:
    """Whether this machine's CPU has AMX bfloat16 (Linux; ``False`` where ``/proc/cpuinfo`` cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return has_amx(set(line.split(":", 1)[1].split()))
    return False


def autocast(device: torch.device, enabled: bool):
    """The context the network runs in: autocast where ``enabled`` and the device has a fast reduced precision."""
    if not enabled:
        return contextlib.nullcontext()
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    if device.type == "cpu" and cpu_bfloat16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()
