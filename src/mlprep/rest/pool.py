"""A bounded pool of threads for ``pre_processing``, a deadline per request, and a view of its state.

Python cannot interrupt a thread, so a request that misses its deadline is answered 504 at once but
the thread running its record keeps its slot until ``pre_processing`` returns; it is told to stop
before the next record. The threads are daemons: a stuck one does not keep the server from exiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
_QUEUED, _RUNNING, _DROPPED = "queued", "running", "dropped"


class Job:
    """One request's work, shared by the event loop (which may give up on it) and its thread."""

    __slots__ = ("abandoned", "chunk", "index", "started", "state", "total", "tracked")

    def __init__(self) -> None:
        self.abandoned = False
        self.state = _QUEUED
        self.started = 0.0
        self.total = 0  # records in the request
        self.index: int | None = None  # the record handed to pre_processing last
        self.chunk: tuple[int, int] | None = None  # first and last record given to pre_processing_batch
        self.tracked = True  # False when run inline: no deadline, so no record to name


class Abandoned(Exception):
    """Raised in the worker thread between records once the request has been answered 504."""


class RequestTimeout(Exception):
    """The request's work did not finish within the pool's deadline."""

    def __init__(self, job: Job) -> None:
        super().__init__("timed out")
        self.job = job


def tracked(records: list[Any], indexes: range | list[int], job: Job) -> list[Any]:
    """``records`` as ``TrackedRecords`` for a job that can time out, as they are otherwise."""
    return TrackedRecords(records, indexes, job) if job.tracked else records


class TrackedRecords(list):  # type: ignore[type-arg]
    """A list of records that notes in ``job`` which record is being iterated, and stops once abandoned.

    ``Preprocessor.apply`` iterates its records to call ``pre_processing`` on each, so this tells
    which record a stuck request was on without touching the runtime.
    """

    def __init__(self, records: Iterable[Any], indexes: range | list[int], job: Job) -> None:
        super().__init__(records)
        self._indexes = indexes
        self._job = job

    def __iter__(self) -> Iterator[Any]:
        job = self._job
        for index, record in zip(self._indexes, list.__iter__(self), strict=True):
            if job.abandoned:
                raise Abandoned
            job.index = index
            yield record


class WorkerPool:
    """At most ``size`` threads run ``pre_processing``; the others wait in a queue, each up to ``timeout``."""

    def __init__(self, size: int, timeout: float) -> None:
        self.size = size
        self.timeout = timeout
        self._queue: queue.SimpleQueue[tuple[Job, Callable[[Job], Any], asyncio.AbstractEventLoop, asyncio.Future]] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._waiting = 0
        self._running: set[Job] = set()

    async def run(self, work: Callable[[Job], T], job: Job) -> T:
        """``work(job)`` in a pool thread; ``RequestTimeout`` if it is not done within ``timeout``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            self._waiting += 1
            if self._idle < self._waiting and self._threads < self.size:
                self._threads += 1
                threading.Thread(target=self._serve, name=f"mlprep-api-{self._threads}", daemon=True).start()
        self._queue.put((job, work, loop, future))
        try:
            return await asyncio.wait_for(future, self.timeout)
        except BaseException as exc:  # the deadline, or the request itself was cancelled
            job.abandoned = True
            with self._lock:
                if job.state == _QUEUED:
                    job.state = _DROPPED
                    self._waiting -= 1
            if isinstance(exc, TimeoutError):
                raise RequestTimeout(job) from None
            raise

    def state(self) -> dict[str, Any]:
        """Threads, how many are busy, waiting and stuck (busy longer than the timeout)."""
        now = time.monotonic()
        with self._lock:
            ages = [now - job.started for job in self._running]
            waiting = self._waiting
        stuck = sum(age > self.timeout for age in ages)
        saturated = (len(ages) >= self.size and waiting > 0) or stuck > 0
        return {
            "threads": self.size,
            "busy": len(ages),
            "waiting": waiting,
            "stuck": stuck,
            "longest_busy_seconds": round(max(ages, default=0.0), 3),
            "saturated": saturated,
        }

    def _serve(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            job, work, loop, future = self._queue.get()
            with self._lock:
                self._idle -= 1
                if job.state == _DROPPED:
                    continue
                job.state = _RUNNING
                job.started = time.monotonic()
                self._waiting -= 1
                self._running.add(job)
            result: Any = None
            error: BaseException | None = None
            try:
                result = work(job)
            except Exception as exc:  # handed to the request, which answers it
                error = exc
            except BaseException as exc:  # SystemExit or KeyboardInterrupt from user code: not a loop's to raise
                error = RuntimeError(f"pre_processing raised {type(exc).__name__}: {exc}")
            finally:
                with self._lock:
                    self._running.discard(job)
            with contextlib.suppress(RuntimeError):  # the event loop is closed: the server is stopping
                loop.call_soon_threadsafe(_settle, future, result, error)
            del job, work, future, result, error


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():  # the request gave up already
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
