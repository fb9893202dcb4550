"""Two helper threads of video2mesh: read ahead (decode and track) and write behind (outputs).

On a CPU the model's work keeps one core busy while decoding, MediaPipe tracking, the overlay's
compositing and encoding and the OBJ writing wait their turn; these two classes let them run
beside it. Both keep the order of their items and a bounded number of them in flight (memory
stays flat in the clip's length), and both hand a failure of their thread to the caller at the
point where the item would have been used.

* :class:`ReadAhead` runs an iterator in a thread, ``depth`` items ahead of its consumer.
* :class:`WriteBehind` runs submitted callables one after another in a thread.

``depth = 0`` runs everything in the calling thread (same results, no threads).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["ReadAhead", "WriteBehind"]

T = TypeVar("T")

_END = object()  # the source is exhausted
_POLL_S = 0.1  # how often a blocked producer checks for a stop request


class _Failure:
    """An exception raised in the thread, to raise again in the consumer."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class ReadAhead(Generic[T]):
    """Iterate ``source`` in a background thread, up to ``depth`` items ahead.

    Args:
        source: the iterator (advanced only by the thread once started).
        depth: items produced ahead of the consumer (0: ``source`` runs in the caller).
        name: the thread's name.

    Attributes:
        waited: seconds the consumer spent waiting for items.

    Use it as an iterator; :meth:`close` (or ``with``) stops the thread after its current item.
    An exception of ``source`` is raised by ``next`` once the items before it are consumed.
    """

    def __init__(self, source: Iterator[T], *, depth: int = 2, name: str = "read-ahead") -> None:
        self.waited = 0.0
        self._source = source
        self._thread: threading.Thread | None = None
        if depth > 0:
            self._items: queue.Queue = queue.Queue(maxsize=depth)
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._produce, name=name, daemon=True)
            self._thread.start()

    def _produce(self) -> None:
        try:
            for item in self._source:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._put(_Failure(exc))

    def _put(self, item: object) -> bool:
        """Queue ``item`` unless a stop is requested (False then)."""
        while not self._stop.is_set():
            try:
                self._items.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> ReadAhead[T]:
        return self

    def __next__(self) -> T:
        tic = time.perf_counter()
        try:
            if self._thread is None:
                return next(self._source)
            item = self._items.get()
        finally:
            self.waited += time.perf_counter() - tic
        if item is _END:
            self._items.put(_END)  # stays exhausted
            raise StopIteration
        if isinstance(item, _Failure):
            self._items.put(item)  # raised again by a later call
            raise item.exc
        return item

    def close(self) -> None:
        """Stop the thread (after the item it is producing) and wait for it."""
        if self._thread is None:
            return
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._items.get_nowait()
            except queue.Empty:
                break
        self._thread.join()
        self._thread = None

    def __enter__(self) -> ReadAhead[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WriteBehind:
    """Run callables in submission order in a background thread, ``depth`` at most queued.

    Args:
        depth: callables queued before :meth:`submit` blocks (0: each runs in :meth:`submit`).
        name: the thread's name.

    Attributes:
        waited: seconds :meth:`submit` and :meth:`finish` spent waiting for the thread.

    The first exception of a callable is raised by the next :meth:`submit` or by :meth:`finish`;
    the callables after it are skipped. :meth:`finish` waits for everything submitted;
    :meth:`close` (or ``with``) also stops the thread, skipping what is still queued.
    """

    def __init__(self, *, depth: int = 2, name: str = "write-behind") -> None:
        self.waited = 0.0
        self._failure: BaseException | None = None
        self._raised = False
        self._thread: threading.Thread | None = None
        if depth > 0:
            self._jobs: queue.Queue = queue.Queue(maxsize=depth)
            self._thread = threading.Thread(target=self._work, name=name, daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is _END:
                    return
                if self._failure is None:
                    job()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                self._failure = exc
            finally:
                self._jobs.task_done()

    def _raise_failure(self) -> None:
        if self._failure is not None and not self._raised:
            self._raised = True
            raise self._failure

    def submit(self, job: Callable[[], object]) -> None:
        """Queue ``job`` (or run it now without a thread); raises an earlier job's exception."""
        if self._thread is None:
            job()
            return
        self._raise_failure()
        tic = time.perf_counter()
        self._jobs.put(job)
        self.waited += time.perf_counter() - tic

    def finish(self) -> None:
        """Wait until every submitted job has run; raises the first exception of one."""
        if self._thread is not None:
            tic = time.perf_counter()
            self._jobs.join()
            self.waited += time.perf_counter() - tic
        self._raise_failure()

    def close(self) -> None:
        """Skip the jobs still queued, stop the thread and wait for it (no exception raised)."""
        if self._thread is None:
            return
        while True:
            try:
                self._jobs.get_nowait()
                self._jobs.task_done()
            except queue.Empty:
                break
        self._jobs.put(_END)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> WriteBehind:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
