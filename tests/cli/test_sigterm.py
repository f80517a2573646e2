"""SIGTERM during a command: the command ends with exit code 143, and a handler that was in place
before it (a program running the command in-process) is called too."""

from __future__ import annotations

import subprocess
import sys

# Installs its own SIGTERM handler (as a test runner would), then receives SIGTERM inside
# stop_on_sigterm and swallows the SystemExit (as a test runner does with a failing test).
HOST = """
import os, signal, time
from segpipe.cli.app import stop_on_sigterm
calls = []
signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(int(signum)))
code = None
try:
    with stop_on_sigterm():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
except SystemExit as exit:
    code = exit.code
print(code, calls, signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL)
"""


def test_sigterm_reaches_the_handler_in_place_before():
    done = subprocess.run([sys.executable, "-c", HOST], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # 143 = 128 + SIGTERM; the host's handler called once, and back in place afterwards.
    assert done.stdout.split() == ["143", "[15]", "True"]


def test_sigterm_without_a_handler_before_exits_143():
    script = (
        "import os, signal, time\nfrom segpipe.cli.app import stop_on_sigterm\n"
        "with stop_on_sigterm():\n    os.kill(os.getpid(), signal.SIGTERM)\n    time.sleep(5)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 143 and "Traceback" not in done.stderr, done.stderr
