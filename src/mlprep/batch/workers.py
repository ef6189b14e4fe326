"""Run ``process_chunk`` in the main process or in N worker processes, results in input order.

At most ``2 * N`` chunks are in flight, so memory stays bounded; when the input goes idle
(``Chunk.idle``) everything in flight is drained, so a slow producer sees its output.

The workers run under ``concurrent.futures.ProcessPoolExecutor`` rather than
``multiprocessing.Pool``: when a worker dies (SIGKILL, the OOM killer, ``os._exit``) the executor
fails every pending future at once, where a Pool waits forever for the lost task. The run then
stops with ``WorkerDied``, naming the chunks that were in flight.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from mlprep.batch.chunks import ChunkResult, collect_less_often, process_chunk
from mlprep.runtime.core import Preprocessor
from mlprep.runtime.outcomes import Chunk

if TYPE_CHECKING:  # imported when workers start: a run in one process does without them
    from concurrent.futures import Future
    from multiprocessing.context import BaseContext
    from multiprocessing.process import BaseProcess

_WORKER: Preprocessor | None = None
PIECE = 2000  # items per task sent to a worker


class WorkerDied(Exception):
    """A worker process ended abruptly; ``lost`` are the chunks in flight, none of them written."""

    def __init__(self, cause: str, lost: list[Chunk]) -> None:
        super().__init__(cause)
        self.cause = cause
        self.lost = lost


def _init_worker(location: str, skip_cutouts: bool, parent: int) -> None:
    global _WORKER
    # Ctrl-C reaches the whole process group: the main process handles it and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    if _WORKER is None:  # inherited when forked; loaded afresh when spawned
        _WORKER = Preprocessor.load(location, skip_cutouts=skip_cutouts)
    collect_less_often()


def _exit_with_parent(parent: int) -> None:
    """End this worker when the main process is gone (SIGKILL): forked workers never see their queue close."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _work(chunk: Chunk, fail_fast: bool) -> ChunkResult:
    assert _WORKER is not None
    return process_chunk(_WORKER, chunk, fail_fast)


def _tracking_context() -> tuple[BaseContext, list[BaseProcess]]:
    """A start-method context (fork where available) that remembers its processes, for their exit codes."""
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    base = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    started: list[BaseProcess] = []

    class TrackingContext(type(base)):  # type: ignore[misc]
        def Process(self, *args: Any, **kwargs: Any) -> BaseProcess:  # the context API
            process = base.Process(*args, **kwargs)  # the real class: it pickles under spawn
            started.append(process)
            return process

    return TrackingContext(), started


def process_in_order(
    pre: Preprocessor, chunks: Iterable[Chunk], workers: int = 1, fail_fast: bool = False
) -> Iterator[tuple[Chunk, ChunkResult]]:
    """Each chunk with its result, in input order; raises ``WorkerDied`` when a worker dies."""
    if workers <= 1:
        for chunk in chunks:
            yield chunk, process_chunk(pre, chunk, fail_fast)
        return
    from concurrent.futures import Future, ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    global _WORKER
    _WORKER = pre
    context, processes = _tracking_context()
    args = (str(pre.path), pre.skip_cutouts, os.getpid())
    executor = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=args)
    pending: deque[tuple[Chunk, Future[ChunkResult]]] = deque()
    finished = False
    try:
        for chunk in _pieces(chunks):
            try:
                future = executor.submit(_work, chunk, fail_fast)
            except BrokenProcessPool:
                pending.append((chunk, Future()))  # never sent, lost all the same
                raise
            pending.append((chunk, future))
            yield from _ready(pending, 0 if chunk.idle else 2 * workers)
        yield from _ready(pending, 0)
        finished = True
    except BrokenProcessPool:
        executor.shutdown(wait=True)
        raise WorkerDied(_death_cause(processes), [chunk for chunk, _ in pending]) from None
    finally:
        if not finished:  # stopped early (first bad record, Ctrl-C, SIGTERM): do not wait for the rest
            for process in processes:
                if process.exitcode is None:
                    process.terminate()
        executor.shutdown(wait=True, cancel_futures=True)


def _ready(pending: deque[tuple[Chunk, Future[ChunkResult]]], limit: int) -> Iterator[tuple[Chunk, ChunkResult]]:
    """The oldest results until at most ``limit`` chunks are in flight; a chunk leaves ``pending`` once done."""
    while len(pending) > limit:
        chunk, future = pending[0]
        result = future.result()
        pending.popleft()
        yield chunk, result


def _death_cause(processes: list[BaseProcess]) -> str:
    """Which worker died and how, e.g. ``worker process 123 was killed by signal SIGKILL``."""
    # The executor stops the surviving workers with SIGTERM once one has died: name the others first.
    ended = [p for p in processes if p.exitcode is not None]
    culprits = [p for p in ended if p.exitcode != -signal.SIGTERM] or ended
    if not culprits:
        return "a worker process ended abruptly"
    return "; ".join(f"worker process {p.pid} {_exit_text(p.exitcode or 0)}" for p in culprits)


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        hint = " (out of memory? see `dmesg`)" if -code == signal.SIGKILL else ""
        return f"was killed by signal {name}{hint}"
    return f"exited with status {code} (os._exit or a crash in native code)"


def _pieces(chunks: Iterable[Chunk]) -> Iterator[Chunk]:
    """Chunks cut to ``PIECE`` items, so that even one file's first megabyte feeds every worker."""
    for chunk in chunks:
        items = chunk.lines if chunk.lines is not None else chunk.records
        if items is None or len(items) <= PIECE:
            yield chunk
            continue
        for start in range(0, len(items), PIECE):
            part = items[start : start + PIECE]
            last = start + PIECE >= len(items)
            yield Chunk(
                chunk.source,
                chunk.unit,
                chunk.first + start,
                lines=part if chunk.lines is not None else None,
                records=part if chunk.lines is None else None,
                fatal=chunk.fatal if last else None,
                idle=chunk.idle and last,
                offset=chunk.offset,
            )
