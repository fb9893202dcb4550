"""The read-ahead and write-behind threads of video2mesh: order, bounds, failures, stopping."""

from __future__ import annotations

import os
import threading
import time

import pytest

from seqdeca.inference.background import ReadAhead, WriteBehind


class Boom(Exception):
    pass


def _counting(n: int, produced: list, *, fail_at: int | None = None):
    for i in range(n):
        if i == fail_at:
            raise Boom(f"item {i}")
        produced.append(i)
        yield i


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_read_ahead_keeps_order_and_ends(depth):
    with ReadAhead(_counting(20, []), depth=depth) as ahead:
        assert list(ahead) == list(range(20))
        assert next(ahead, None) is None  # stays exhausted


def test_read_ahead_runs_at_most_depth_items_ahead():
    produced: list[int] = []
    with ReadAhead(_counting(100, produced), depth=2) as ahead:
        assert next(ahead) == 0
        time.sleep(0.3)  # the thread fills the queue and blocks
        # one consumed, two queued, one made and waiting for room
        assert len(produced) <= 4, produced


def test_read_ahead_hands_a_failure_over_after_the_items_before_it():
    with ReadAhead(_counting(10, [], fail_at=3), depth=2) as ahead:
        assert [next(ahead) for _ in range(3)] == [0, 1, 2]
        with pytest.raises(Boom, match="item 3"):
            next(ahead)
        with pytest.raises(Boom):  # and again, not a silent end
            next(ahead)


def test_read_ahead_close_stops_a_blocked_thread():
    produced: list[int] = []
    ahead = ReadAhead(_counting(10_000, produced), depth=1, name="test-read-ahead")
    next(ahead)
    ahead.close()
    assert not [t for t in threading.enumerate() if t.name == "test-read-ahead"]
    assert len(produced) < 10


@pytest.mark.parametrize("depth", [0, 2])
def test_write_behind_runs_jobs_in_order(depth):
    done: list[int] = []
    with WriteBehind(depth=depth) as writer:
        for i in range(50):
            writer.submit(lambda i=i: done.append(i))
        writer.finish()
        assert done == list(range(50))


def test_write_behind_raises_a_failure_once_and_skips_the_rest():
    done: list[int] = []

    def fail() -> None:
        raise Boom("disk full")

    with WriteBehind(depth=2) as writer:
        writer.submit(lambda: done.append(0))
        writer.submit(fail)
        with pytest.raises(Boom, match="disk full"):
            for i in range(1, 20):  # a later submit (or finish) raises it
                writer.submit(lambda i=i: done.append(i))
            writer.finish()
        writer.finish()  # raised once
    assert done[0] == 0 and len(done) <= 3  # jobs after the failure are skipped


def test_write_behind_close_skips_queued_jobs_and_stops():
    started, release = threading.Event(), threading.Event()
    done: list[int] = []

    def slow() -> None:
        started.set()
        release.wait(5)
        done.append(0)

    writer = WriteBehind(depth=5, name="test-write-behind")
    writer.submit(slow)
    for i in range(1, 4):
        writer.submit(lambda i=i: done.append(i))
    started.wait(5)
    threading.Timer(0.2, release.set).start()
    writer.close()
    assert done == [0]  # the running job finished, the queued ones were skipped
    assert not [t for t in threading.enumerate() if t.name == "test-write-behind"]


def test_lines_written_in_visible_stderr_survive_another_threads_silence(capfd):
    from seqdeca.prep.tracking import native_stderr_silenced, visible_stderr

    silenced, release = threading.Event(), threading.Event()

    def noisy_native_work() -> None:
        with native_stderr_silenced():
            silenced.set()
            os.write(2, b"chatter\n")  # what the silence is for
            release.wait(5)

    worker = threading.Thread(target=noisy_native_work)
    worker.start()
    silenced.wait(5)
    threading.Timer(0.2, release.set).start()
    with visible_stderr():  # waits for the silence to end
        os.write(2, b"error: a clip failed\n")
    worker.join()
    with native_stderr_silenced():
        os.write(2, b"more chatter\n")
    err = capfd.readouterr().err
    assert "error: a clip failed" in err
    assert "chatter" not in err
