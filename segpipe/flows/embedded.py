"""Prefect's embedded server, started out of the reach of the terminal's Ctrl-C.

On Prefect's embedded default (no ``PREFECT_API_URL``) the first flow run of a process starts a
temporary server as a child process, in the command's process group. Ctrl-C reaches every process
of that group: the server would stop at once, and the flow, reporting that it was interrupted,
would wait for it through the client's retries (over two minutes), then end with an httpx
traceback and exit code 1. :func:`start_embedded_server` starts it with SIGINT held back
(:mod:`segpipe.interrupts`); Prefect stops it when the command ends.
"""

from __future__ import annotations

from segpipe.interrupts import interrupts_held


def start_embedded_server() -> None:
    """Start the embedded server now, out of Ctrl-C's reach; nothing when a Prefect API is set or
    the server runs already."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return
    with interrupts_held():
        SubprocessASGIServer().start()  # the instance Prefect's clients take
