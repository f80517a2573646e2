"""A command killed outright (SIGKILL to it alone, as the out-of-memory killer does) takes the processes
it started with it: real processes, a real SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from segpipe.cli import watchdog
from segpipe.cli.watchdog import MARK, end_marked, marked

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/environ"), reason="the watchdog needs /proc")

# A command that starts two children (one ignores SIGTERM), prints their ids and is SIGKILLed.
# The module is loaded by its path: importing the segpipe.cli package would load the whole command line.
COMMAND = """
import importlib.util, os, signal, subprocess, sys
spec = importlib.util.spec_from_file_location("watchdog", sys.argv[1])
watchdog = importlib.util.module_from_spec(spec)
spec.loader.exec_module(watchdog)
watch_children = watchdog.watch_children
sleep, stubborn = "import time; time.sleep(600)", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
with watch_children():
    children = [subprocess.Popen([sys.executable, "-c", code]) for code in (sleep, stubborn)]
print(*(child.pid for child in children), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_children_of_a_killed_command_are_ended():
    command = subprocess.Popen([sys.executable, "-c", COMMAND, watchdog.__file__], stdout=subprocess.PIPE, text=True)
    children = []
    try:
        children = [int(pid) for pid in command.stdout.readline().split()]
        assert command.wait(timeout=60) == -signal.SIGKILL and len(children) == 2
        deadline = time.monotonic() + 30
        while any(running(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(running(pid) for pid in children)  # the one ignoring SIGTERM too (SIGKILL after the grace)
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        command.stdout.close()


def test_end_marked_ends_only_the_marked_processes():
    mark = f"test-{os.getpid()}"
    sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
    ours = subprocess.Popen(sleep, env={**os.environ, MARK: mark})
    other = subprocess.Popen(sleep, env={**os.environ, MARK: mark + "-other"})
    try:
        deadline = time.monotonic() + 30
        while ours.pid not in marked(mark) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marked(mark) == [ours.pid]
        end_marked(mark, grace=10)
        assert ours.wait(timeout=10) == -signal.SIGTERM and other.poll() is None
    finally:
        for process in (ours, other):
            process.kill()
            process.wait()
