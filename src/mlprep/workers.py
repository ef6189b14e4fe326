"""Run ``process_chunk`` in the main process or in N worker processes, results in input order.

At most ``2 * N`` chunks are in flight, so memory stays bounded; when the input goes idle
(``Chunk.idle``) everything in flight is drained, so a slow producer sees its output.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator
from multiprocessing.pool import AsyncResult

from mlprep.core import Preprocessor
from mlprep.process import Chunk, ChunkResult, process_chunk

_WORKER: Preprocessor | None = None
PIECE = 2000  # items per task sent to a worker


def _init_worker(location: str, skip_cutouts: bool) -> None:
    global _WORKER
    if _WORKER is None:  # inherited when forked; loaded afresh when spawned
        _WORKER = Preprocessor.load(location, skip_cutouts=skip_cutouts)


def _work(chunk: Chunk, fail_fast: bool) -> ChunkResult:
    assert _WORKER is not None
    return process_chunk(_WORKER, chunk, fail_fast)


def process_in_order(
    pre: Preprocessor, chunks: Iterable[Chunk], workers: int = 1, fail_fast: bool = False
) -> Iterator[tuple[Chunk, ChunkResult]]:
    """Each chunk with its result, in input order."""
    if workers <= 1:
        for chunk in chunks:
            yield chunk, process_chunk(pre, chunk, fail_fast)
        return
    global _WORKER
    _WORKER = pre
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    args = (str(pre.path), pre.skip_cutouts)
    with context.Pool(workers, initializer=_init_worker, initargs=args) as pool:
        pending: deque[tuple[Chunk, AsyncResult[ChunkResult]]] = deque()
        for chunk in _pieces(chunks):
            pending.append((chunk, pool.apply_async(_work, (chunk, fail_fast))))
            limit = 0 if chunk.idle else 2 * workers
            while len(pending) > limit:
                done, result = pending.popleft()
                yield done, result.get()
        while pending:
            done, result = pending.popleft()
            yield done, result.get()


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
