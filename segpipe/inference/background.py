"""Run a producer in a thread, a bounded queue ahead of its consumer (reading overlaps computing)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(items: Iterable[T], *, depth: int, name: str = "segpipe-prefetch") -> Iterator[T]:
    """Iterate ``items`` in a background thread, keeping up to ``depth`` ready.

    Exceptions in the producer are raised in the consumer; a consumer that stops early (or
    fails) stops the producer. ``depth=0``: no thread, the items are made as they are taken.
    """
    if depth == 0:
        yield from items
        return
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(_DONE)
        except BaseException as err:  # handed to the consumer
            offer(_Failure(err))

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


class Worker:
    """A single background thread running submitted calls in order (the writer).

    Errors are raised at the next :meth:`submit` or at :meth:`close`; at most ``depth`` calls wait.
    ``depth=0``: no thread, each call runs in :meth:`submit` (its error raised there).
    """

    def __init__(self, *, depth: int = 2, name: str = "segpipe-writer"):
        self._error: BaseException | None = None
        self._thread = None
        if depth == 0:
            return
        self._calls: queue.Queue = queue.Queue(maxsize=depth)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                return
            if self._error is None:
                try:
                    call()
                except BaseException as err:
                    self._error = err

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, call: Callable[[], None]) -> None:
        """Queue ``call``; blocks while ``depth`` calls are waiting."""
        self._check()
        if self._thread is None:
            call()
            return
        self._calls.put(call)

    def close(self) -> None:
        """Wait for every queued call; raise the first error any of them raised."""
        if self._thread is None:
            return
        self._calls.put(None)
        self._thread.join()
        self._check()
