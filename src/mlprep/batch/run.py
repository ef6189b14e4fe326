"""Batch mode: files or stdin in (JSONL, JSON, Avro), JSONL out, every bad record reported."""

from __future__ import annotations

import base64
import contextlib
import os
import stat
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

import orjson

from mlprep.batch.chunks import unprocessed
from mlprep.batch.progress import Progress
from mlprep.batch.workers import WorkerDied, process_in_order
from mlprep.errors import InputFormatError, MlprepError, OutputError
from mlprep.runtime.codecs import detect_codec
from mlprep.runtime.codecs.base import DEFAULT_MAX_RECORD_BYTES
from mlprep.runtime.core import Preprocessor, describe_exception
from mlprep.runtime.outcomes import Chunk, Failure, Stage

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
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES  # MAX_RECORD_BYTES


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
        dead = stack.enter_context(_open_dead_letter(options.dead_letter)) if options.dead_letter else None

        def report(failures: list[Failure]) -> None:
            for failure in failures:
                err.write(f"mlprep: {failure.where()}: {failure.stage} failed: {failure.message}\n")
            summary.n_failed += len(failures)
            if dead is not None and failures:
                _append(dead, failures)

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
            lost = [failure for chunk in exc.lost for failure in unprocessed(chunk, Stage.WORKER, exc.cause)]
            summary.n_in += len(lost)
            summary.n_failed += len(lost)
            summary.error = f"{exc.cause}; the run stopped. {_lost_text(exc.lost, dead is not None)}"
            if dead is not None and lost:
                try:
                    _append(dead, lost)
                except OSError as error:
                    summary.error += f" They could not be written to {error.filename}: {error.strerror}."
        except BrokenPipeError:
            raise
        except OSError as exc:  # a full disk, a closed pipe: what was written cannot be trusted
            name = getattr(out, "name", None)  # a path, <stdout>, or the descriptor of a temporary file
            where = exc.filename or (name if isinstance(name, str) else "the output")
            summary.error = f"cannot write {where}: {exc.strerror or exc}"
            summary.output_complete = dead is not None and exc.filename == dead.name
        except MlprepError as exc:  # the output refused a record (stdout->Kafka): say it as it is
            summary.error = str(exc)
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


def _open_dead_letter(path: Path) -> BinaryIO:
    try:
        return open(path, "ab", buffering=0)
    except OSError as exc:
        raise OutputError(f"cannot open the dead-letter file {path}: {exc.strerror}") from None


def _append(dead: BinaryIO, failures: list[Failure]) -> None:
    """One write of whole lines; an error names the dead-letter file."""
    try:
        dead.write(b"".join(dead_letter_line(failure) for failure in failures))
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, dead.name) from exc


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
                codec = detect_codec(stream, name, options.input_format, options.avro_schema, options.max_record_bytes)
                for chunk in codec.chunks(stream, name):
                    items = chunk.lines if chunk.lines is not None else chunk.records or []
                    unit, position = chunk.unit, chunk.first + len(items)
                    yield chunk
        except (OSError, InputFormatError) as exc:
            message = str(exc) if isinstance(exc, InputFormatError) else f"cannot read input: {exc.strerror}"
            failure = Failure(name, unit, position, Stage.OPEN, message)
            yield Chunk(name, unit, position, records=[], fatal=failure, idle=True)
        except Exception as exc:  # a bug in a codec: report it as this input's last failure and go on
            message = f"cannot read input past this point: unexpected {describe_exception(exc)} (please report this)"
            failure = Failure(name, unit, position, Stage.DECODE, message)
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


def refuse_overlaps(sources: list[str], output: Path | None, dead_letter: Path | None) -> None:
    """Refuse an output or dead-letter file that is one of the inputs (or each other), by inode, not name.

    Opening the output truncates it before the input is read: ``-o in.jsonl`` would lose the input.
    """
    if output is not None and dead_letter is not None and os.path.realpath(output) == os.path.realpath(dead_letter):
        raise OutputError(f"--dead-letter {dead_letter} is the output file: give them different names.")
    files: list[tuple[str, os.stat_result]] = []  # every existing file read or written, in argument order
    for source in sources or [STDIN]:
        with contextlib.suppress(OSError, ValueError, AttributeError):  # unreadable inputs are reported later
            files.append((_name(source), os.fstat(sys.stdin.fileno()) if source == STDIN else os.stat(source)))
    for option, path in (("-o", output), ("--dead-letter", dead_letter)):
        if path is None:
            continue
        try:
            written = os.stat(path)
        except OSError:
            continue
        for name, other in files:
            if stat.S_ISREG(written.st_mode) and (other.st_dev, other.st_ino) == (written.st_dev, written.st_ino):
                raise OutputError(
                    f"{option} {path} is the same file as {name}: writing it would destroy it. "
                    "Write to another file (then rename it if you wish)."
                )
        files.append((f"{option} {path}", written))


class OutputFile:
    """The ``-o`` file, written under a temporary name beside it and renamed over it when the run ends.

    A run that is killed or interrupted never leaves a file that looks complete: the target is
    absent (or the previous one untouched). SIGTERM and Ctrl-C remove the temporary file; only
    SIGKILL can leave one (``.NAME.*.tmp``). Non-regular targets (``/dev/stdout``, a FIFO) are
    written directly.
    """

    def __init__(self, path: Path) -> None:
        self.target = Path(os.path.realpath(path))  # through a symlink: replace the file, keep the link
        self.temp: Path | None = None
        try:
            existing: os.stat_result | None = os.stat(self.target)
        except OSError:  # absent (or unreachable: then creating the temporary file says why)
            existing = None
        try:
            if existing is not None and not stat.S_ISREG(existing.st_mode):
                self.stream: BinaryIO = open(self.target, "wb")  # noqa: SIM115 - closed in commit/discard
                return
            self.temp = self.target.with_name(f".{self.target.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
            fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as exc:
            raise OutputError(f"cannot write the output {path}: {exc.strerror}") from None
        if existing is not None:
            os.fchmod(fd, stat.S_IMODE(existing.st_mode))
        self.stream = open(fd, "wb")  # noqa: SIM115 - closed in commit/discard

    def commit(self) -> None:
        """Flush to disk and rename over the target; on failure nothing is left behind."""
        try:
            self.stream.flush()
            if self.temp is not None:
                os.fsync(self.stream.fileno())
            self.stream.close()
            if self.temp is not None:
                os.replace(self.temp, self.target)
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        """Drop what was written: the target stays as it was."""
        with contextlib.suppress(OSError):
            self.stream.close()
        if self.temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temp)
