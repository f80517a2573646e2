"""Advisory file locks (flock) where the filesystem has them.

Some cluster mounts refuse flock (``ENOLCK``, ``EOPNOTSUPP``): there :func:`exclusive` returns
the filesystem's error instead of locking, and the caller goes on unlocked and says so.
"""

from __future__ import annotations

import fcntl


def exclusive(handle, *, wait: bool = True) -> OSError | None:
    """Lock the open file ``handle`` for this process alone: ``None`` once held, or the error of a
    filesystem without locks. Without ``wait``, a lock held elsewhere raises :class:`BlockingIOError`."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise
    except OSError as err:
        return err
    return None
