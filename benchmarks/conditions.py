"""The machine conditions benchmarks measure under: quiet, and beside one competing CPU-bound process.

A lab machine is shared; a second training or a user's script takes a core. ``under`` runs that
competitor (a Python busy loop in its own session) for the length of a ``with`` block::

    for condition in CONDITIONS:
        with under(condition):
            ...  # measure
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator

QUIET = "quiet"
COMPETING = "one competing process"
CONDITIONS = (QUIET, COMPETING)


@contextlib.contextmanager
def under(condition: str) -> Iterator[None]:
    """Nothing else for ``quiet``; one CPU-bound process, killed on leaving, for ``one competing process``."""
    if condition == QUIET:
        yield
        return
    if condition != COMPETING:
        raise ValueError(f"unknown condition {condition!r}; known: {', '.join(CONDITIONS)}")
    competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    try:
        yield
    finally:
        competitor.kill()
        competitor.wait()
