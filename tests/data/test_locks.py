"""Advisory locks: held once, refused to a second holder without waiting, the error of a filesystem without them returned."""

import errno
import fcntl

import pytest

from segpipe.data.locks import exclusive


def test_a_lock_is_held_once_and_a_second_open_file_is_refused_without_waiting(tmp_path):
    with open(tmp_path / "lock", "a") as first, open(tmp_path / "lock", "a") as second:
        assert exclusive(first) is None
        with pytest.raises(BlockingIOError):
            exclusive(second, wait=False)
        fcntl.flock(first, fcntl.LOCK_UN)
        assert exclusive(second, wait=False) is None


def test_a_filesystem_without_locks_returns_its_error(tmp_path, monkeypatch):
    def no_locks(handle, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)  # no such filesystem here: the call fails as it does there
    with open(tmp_path / "lock", "a") as handle:
        refused = exclusive(handle, wait=False)
    assert isinstance(refused, OSError) and refused.errno == errno.ENOLCK
