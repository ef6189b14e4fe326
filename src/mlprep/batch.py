"""Batch mode: files or stdin in (JSONL, JSON, Avro), JSONL out, every bad record reported."""

from __future__ import annotations

import base64
import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

import orjson

from mlprep.codecs import detect_codec
from mlprep.core import Preprocessor
from mlprep.errors import InputFormatError
from mlprep.process import Chunk, Failure
from mlprep.progress import Progress
from mlprep.workers import process_in_order

STDIN = "-"
STDIN_NAME = "<stdin>"


@dataclass
class BatchOptions:
    input_format: str = "auto"
    avro_schema: str | None = None
    workers: int = 1
    on_error: str = "fail"  # "fail" stops at the first bad record, "skip" reports it and goes on
    dead_letter: Path | None = None
    progress: bool | None = None  # None: when reading a file and stderr is a terminal


@dataclass
class Summary:
    n_in: int = 0
    n_out: int = 0
    n_failed: int = 0

    def line(self) -> str:
        return f"{self.n_in} in, {self.n_out} out, {self.n_failed} failed"


def run_batch(
    pre: Preprocessor,
    sources: list[str],
    out: BinaryIO,
    err: TextIO,
    options: BatchOptions | None = None,
) -> Summary:
    """Process every source in order into ``out``; report failures on ``err``."""
    options = options or BatchOptions()
    summary = Summary()
    fail_fast = options.on_error == "fail"
    show_progress = options.progress if options.progress is not None else err.isatty()
    progress: Progress | None = None
    with contextlib.ExitStack() as stack:
        dead = stack.enter_context(open(options.dead_letter, "ab")) if options.dead_letter else None
        chunks = _chunks(sources or [STDIN], options)
        for chunk, result in process_in_order(pre, chunks, options.workers, fail_fast):
            if result.output:
                out.write(result.output)
            summary.n_in += result.n_in
            summary.n_out += result.n_out
            failures = result.failures
            if chunk.fatal is not None:
                failures = [*failures, chunk.fatal]
                summary.n_in += 1
            for failure in failures:
                err.write(f"mlprep: {failure.where()}: {failure.stage} failed: {failure.message}\n")
                if dead is not None:
                    dead.write(dead_letter_line(failure))
            summary.n_failed += len(failures)
            if chunk.idle:
                out.flush()
                if dead is not None:
                    dead.flush()
            if show_progress and chunk.source != STDIN_NAME:
                if progress is None or progress.label != chunk.source:
                    if progress is not None:
                        progress.close(summary.n_in)
                    progress = Progress(err, chunk.source, _size(chunk.source))
                progress.update(chunk.offset, summary.n_in)
            if failures and fail_fast:
                break
        if progress is not None:
            progress.close(summary.n_in)
    out.flush()
    return summary


def _chunks(sources: list[str], options: BatchOptions) -> Iterator[Chunk]:
    for source in sources:
        try:
            with _open(source) as stream:
                codec = detect_codec(stream, _name(source), options.input_format, options.avro_schema)
                yield from codec.chunks(stream, _name(source))
        except (OSError, InputFormatError) as exc:
            message = str(exc) if isinstance(exc, InputFormatError) else f"cannot read input: {exc.strerror}"
            failure = Failure(_name(source), "record", 1, "open", message)
            yield Chunk(_name(source), "record", 1, records=[], fatal=failure, idle=True)


def _open(source: str) -> contextlib.AbstractContextManager[BinaryIO]:
    """The input as a context manager; stdin is not closed."""
    if source == STDIN:
        return contextlib.nullcontext(sys.stdin.buffer)
    return open(source, "rb")


def _name(source: str) -> str:
    return STDIN_NAME if source == STDIN else source


def _size(source: str) -> int:
    try:
        return os.path.getsize(source)
    except OSError:
        return 0


def dead_letter_line(failure: Failure) -> bytes:
    """One JSON line: where the record was, why it failed and its raw input (text or base64)."""
    entry: dict[str, object] = {
        "source": failure.source,
        failure.unit: failure.position,
        "stage": failure.stage,
        "error": failure.message,
    }
    raw = failure.raw
    if raw is not None:
        try:
            entry["raw"] = raw.decode("utf-8")
        except UnicodeDecodeError:
            entry["raw_base64"] = base64.b64encode(raw).decode("ascii")
    return orjson.dumps(entry) + b"\n"
