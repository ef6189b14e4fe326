"""Batch mode: files or stdin in (JSONL, JSON, Avro), JSONL out, every bad record reported."""

from __future__ import annotations

import base64
import contextlib
import os
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

import orjson

from mlprep.codecs import detect_codec
from mlprep.core import Preprocessor, describe_exception
from mlprep.errors import InputFormatError
from mlprep.process import Chunk, Failure, unprocessed
from mlprep.progress import Progress
from mlprep.workers import WorkerDied, process_in_order

STDIN = "-"
STDIN_NAME = "<stdin>"
WORKER = "worker"  # stage of the records a dead worker process took with it


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
    error: str | None = None  # why the run stopped early, beyond bad records (a worker died, ...)
    output_complete: bool = True  # False when writing the output itself failed: it must not be kept

    def line(self) -> str:
        return f"{self.n_in} in, {self.n_out} out, {self.n_failed} failed"


def run_batch(
    pre: Preprocessor,
    sources: list[str],
    out: BinaryIO,
    err: TextIO,
    options: BatchOptions | None = None,
) -> Summary:
    """Process every source in order into ``out``; report failures on ``err``.

    Anything that stops the run early (a worker process died, an unexpected error) is reported
    in ``Summary.error`` rather than raised, so the caller always prints the summary line.
    """
    options = options or BatchOptions()
    summary = Summary()
    fail_fast = options.on_error == "fail"
    show_progress = options.progress if options.progress is not None else err.isatty()
    progress: Progress | None = None
    with contextlib.ExitStack() as stack:
        # Unbuffered, one write per chunk: each bad record is on disk as a whole line as soon as it is found.
        dead = stack.enter_context(open(options.dead_letter, "ab", buffering=0)) if options.dead_letter else None

        def report(failures: list[Failure]) -> None:
            for failure in failures:
                err.write(f"mlprep: {failure.where()}: {failure.stage} failed: {failure.message}\n")
            if dead is not None and failures:
                dead.write(b"".join(dead_letter_line(failure) for failure in failures))
            summary.n_failed += len(failures)

        try:
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
                report(failures)
                if chunk.idle:
                    out.flush()
                if show_progress and chunk.source != STDIN_NAME:
                    if progress is None or progress.label != chunk.source:
                        if progress is not None:
                            progress.close(summary.n_in)
                        progress = Progress(err, chunk.source, _size(chunk.source))
                    progress.update(chunk.offset, summary.n_in)
                if failures and fail_fast:
                    break
            out.flush()
        except WorkerDied as exc:
            lost = [failure for chunk in exc.lost for failure in unprocessed(chunk, WORKER, exc.cause)]
            summary.n_in += len(lost)
            summary.n_failed += len(lost)
            if dead is not None and lost:
                dead.write(b"".join(dead_letter_line(failure) for failure in lost))
            summary.error = f"{exc.cause}; the run stopped. {_lost_text(exc.lost, dead is not None)}"
        except BrokenPipeError:
            raise
        except OSError as exc:
            summary.error = f"cannot write the output: {exc}"
            summary.output_complete = False
        except Exception as exc:
            traceback.print_exc(file=err)
            summary.error = (
                f"unexpected {describe_exception(exc)}; the run stopped (please report this with the traceback above)"
            )
        finally:
            if progress is not None:
                progress.close(summary.n_in)
    if summary.output_complete:
        out.flush()
    return summary


def _lost_text(lost: list[Chunk], dead_letter: bool) -> str:
    """``Not processed: a.jsonl lines 1-4000, b.jsonl records 1-500 (...)``: what a dead worker took with it."""
    spans: list[list] = []  # [source, unit, first, last]
    for chunk in lost:
        items = chunk.lines if chunk.lines is not None else chunk.records or []
        last = chunk.first + max(len(items), 1) - 1
        if spans and spans[-1][0] == chunk.source and spans[-1][3] + 1 >= chunk.first:
            spans[-1][3] = max(spans[-1][3], last)
        else:
            spans.append([chunk.source, chunk.unit, chunk.first, last])
    where = ", ".join(f"{source} {unit}s {first}-{last}" for source, unit, first, last in spans)
    kept = "they are in the dead-letter file" if dead_letter else "--dead-letter FILE keeps them"
    return (
        f"Not processed (the output ends before them; {kept}): {where or 'nothing'}, "
        "nor any input after them. "
        "Run with --workers 1 to find the record that kills the process."
    )


def _chunks(sources: list[str], options: BatchOptions) -> Iterator[Chunk]:
    for source in sources:
        name = _name(source)
        unit, position = "record", 1
        try:
            with _open(source) as stream:
                codec = detect_codec(stream, name, options.input_format, options.avro_schema)
                for chunk in codec.chunks(stream, name):
                    items = chunk.lines if chunk.lines is not None else chunk.records or []
                    unit, position = chunk.unit, chunk.first + len(items)
                    yield chunk
        except (OSError, InputFormatError) as exc:
            message = str(exc) if isinstance(exc, InputFormatError) else f"cannot read input: {exc.strerror}"
            failure = Failure(name, unit, position, "open", message)
            yield Chunk(name, unit, position, records=[], fatal=failure, idle=True)
        except Exception as exc:  # a bug in a codec: report it as this input's last failure and go on
            message = f"cannot read input past this point: unexpected {describe_exception(exc)} (please report this)"
            failure = Failure(name, unit, position, "decode", message)
            yield Chunk(name, unit, position, records=[], fatal=failure, idle=True)


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
