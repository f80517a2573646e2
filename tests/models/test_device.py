"""The CPUs a process may use: affinity and cgroup quotas, not the host's count."""

from __future__ import annotations

import os

import pytest
import torch

from segpipe.errors import InputError
from segpipe.models import device


def test_a_cgroup_v2_quota_caps_the_cpus(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert device.cgroup_cpu_quota(tmp_path) == 1.5
    assert device.available_cpus(cgroup=tmp_path) == min(1, len(os.sched_getaffinity(0)))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert device.cgroup_cpu_quota(tmp_path) is None
    assert device.available_cpus(cgroup=tmp_path) == len(os.sched_getaffinity(0))


def test_a_cgroup_v1_quota_caps_the_cpus(tmp_path):
    folder = tmp_path / "cpu,cpuacct"
    folder.mkdir()
    (folder / "cpu.cfs_quota_us").write_text("100000\n")
    (folder / "cpu.cfs_period_us").write_text("100000\n")
    assert device.cgroup_cpu_quota(tmp_path) == 1.0
    (folder / "cpu.cfs_quota_us").write_text("-1\n")
    assert device.cgroup_cpu_quota(tmp_path) is None


def test_threads_follow_the_usable_cpus_less_loader_processes(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(device, "available_cpus", lambda **_: 6)
    assert device.cpu_threads() == 6 and device.cpu_threads(reserved=2) == 4 and device.cpu_threads(reserved=9) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's own setting wins
    assert device.cpu_threads(reserved=2) == 3
    before = torch.get_num_threads()
    try:
        assert device.use_cpu_threads() == 3 and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "CPU"])
def test_unknown_devices_are_refused(name):
    with pytest.raises(InputError, match="use auto, cpu, cuda or cuda:N"):
        device.resolve_device(name)


def test_openmp_waits_briefly_before_sleeping():
    """segpipe sets a short OpenMP spin (before torch starts its runtime) unless the user set one."""
    import segpipe  # noqa: F401

    assert os.environ["GOMP_SPINCOUNT"].isdigit()
