"""The prefetching producer and the writer: in a thread of their own, or inline (``depth=0``)."""

import threading

import numpy as np
import pytest

from segpipe.inference import ArraySink, InferenceParams, stream_predict
from segpipe.inference.background import Worker, prefetch

from conftest import conv_net


def made_in(depth: int) -> set[str]:
    threads = set()

    def items():
        for i in range(3):
            threads.add(threading.current_thread().name)
            yield i

    assert list(prefetch(items(), depth=depth)) == [0, 1, 2]
    return threads


def test_prefetch_runs_the_producer_in_a_thread_unless_depth_is_0():
    assert made_in(2) == {"segpipe-prefetch"}
    assert made_in(0) == {threading.current_thread().name}


def test_inline_prefetch_raises_the_producers_error():
    def items():
        yield 1
        raise ValueError("bad item")

    with pytest.raises(ValueError, match="bad item"):
        list(prefetch(items(), depth=0))


def test_an_inline_worker_runs_each_call_at_submit_and_raises_there():
    done = []
    worker = Worker(depth=0)
    worker.submit(lambda: done.append(threading.current_thread().name))
    assert done == [threading.current_thread().name]
    with pytest.raises(RuntimeError, match="disk full"):
        worker.submit(lambda: (_ for _ in ()).throw(RuntimeError("disk full")))
    worker.close()


class RecordingSink(ArraySink):
    def __init__(self, *args, in_memory: bool):
        super().__init__(*args)
        self.in_memory, self.threads = in_memory, set()

    def write(self, frame, box, values) -> None:
        self.threads.add(threading.current_thread().name)
        super().write(frame, box, values)


@pytest.mark.parametrize("in_memory", [True, False])
def test_stream_writes_from_memory_to_memory_in_the_callers_thread(in_memory):
    """An in-memory image into memory runs without the writer thread (it only slows the network on
    few cores); any other sink is written by the writer thread. Both give the same numbers."""
    net = conv_net(2, 1, 2)
    image = np.random.default_rng(0).random((1, 70, 50), dtype=np.float32)
    sinks = {}
    for memory in (True, False):
        sinks[memory] = RecordingSink(2, (), image.shape[1:], in_memory=memory)
        stream_predict(net, image, sinks[memory], roi_size=(32, 32), out_channels=2, params=InferenceParams(flip_tta=False))
    expected = {threading.current_thread().name} if in_memory else {"segpipe-writer"}
    assert sinks[in_memory].threads == expected
    np.testing.assert_array_equal(sinks[True].values, sinks[False].values)
