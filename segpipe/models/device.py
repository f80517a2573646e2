"""Where a network runs: the device, and on the CPU how many threads it may use."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from segpipe.errors import InputError

CGROUP = Path("/sys/fs/cgroup")


def resolve_device(device: str) -> torch.device:
    """``auto`` picks CUDA when available; ``cpu``, ``cuda`` and ``cuda:N`` are taken as they are.

    Raises:
        InputError: Any other name, or CUDA asked for where there is none.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not is_device_name(device):
        raise InputError(f"device {device!r}: use auto, cpu, cuda or cuda:N")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r}: this machine has no CUDA GPU (use auto or cpu)")
    return torch.device(device)


def is_device_name(device: str) -> bool:
    """Whether ``device`` is a name :func:`resolve_device` takes: auto, cpu, cuda or cuda:N."""
    return device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())


def available_cpus(*, cgroup: Path = CGROUP) -> int:
    """CPUs this process may really use: its affinity mask, capped by a cgroup CPU quota.

    A container limited to 2 CPUs on a 64-core host sees 64 in ``os.cpu_count()``; threads
    sized to that fight over the quota. The quota is read from cgroup v2 (``cpu.max``) or
    v1 (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``); a fractional quota rounds down (at least 1).
    """
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup)
    if quota is not None:
        count = min(count, max(1, math.floor(quota)))
    return max(1, count)


def cgroup_cpu_quota(cgroup: Path = CGROUP) -> float | None:
    """CPUs allowed by the cgroup's quota, or ``None`` when there is no quota (or no cgroup files)."""
    try:
        text = (cgroup / "cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        if text:
            return None
    except (OSError, ValueError, IndexError):
        pass
    for folder in (cgroup / "cpu", cgroup / "cpu,cpuacct"):
        try:
            quota = int((folder / "cpu.cfs_quota_us").read_text())
            period = int((folder / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return quota / period if quota > 0 and period > 0 else None
    return None


def cpu_threads(*, reserved: int = 0) -> int:
    """Threads for torch's CPU work: ``OMP_NUM_THREADS`` when the user set it, else the usable
    CPUs less ``reserved`` (data-loading processes that run beside it), at least one."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    return max(1, available_cpus() - reserved)


def use_cpu_threads(*, reserved: int = 0) -> int:
    """Set torch's intra-op threads to :func:`cpu_threads`; returns the number."""
    threads = cpu_threads(reserved=reserved)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
