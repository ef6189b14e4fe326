"""Batch mode's work on one chunk: decode raw lines, apply, serialise to JSONL, report each failure.

This runs in the main process or in worker processes (``--workers``): everything it takes and
returns pickles cheaply.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import Any

import orjson

from mlprep.runtime.codecs.lines import decode_lines
from mlprep.runtime.core import Preprocessor, describe_exception, records_of
from mlprep.runtime.outcomes import Chunk, Failure, Stage
from mlprep.runtime.serialization import dumps, dumps_many

_ONE_LINE_EACH = frozenset({dict, type(None)})  # outputs written as one line (dict) or none (None)
YOUNG_OBJECTS = 20_000  # allocations between two collections of the youngest objects (CPython's default: 700)


@dataclass(slots=True)
class ChunkResult:
    output: bytes
    n_in: int
    n_out: int
    failures: list[Failure] = field(default_factory=list)


def collect_less_often() -> None:
    """Tune the garbage collector for a process that runs chunks.

    A chunk's records stay alive until they are written: at CPython's default threshold each
    collection walks them and moves them to older generations, which costs a quarter of an identity
    run. Reference cycles are still collected, every ``YOUNG_OBJECTS`` allocations; what loading
    created (modules, the preprocessing) is frozen and never walked again.
    """
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG_OBJECTS), middle, old)


def process_chunk(pre: Preprocessor, chunk: Chunk, fail_fast: bool = False) -> ChunkResult:
    """Decode, apply and serialise a chunk; with ``fail_fast`` stop at the first bad record."""
    failures: list[Failure] = list(chunk.failures) if chunk.failures else []
    positions: list[int] | None = None
    if chunk.lines is not None:
        try:
            records = list(map(orjson.loads, chunk.lines))
        except orjson.JSONDecodeError:  # decode again line by line: each bad line is reported at its place
            records, positions = decode_lines(chunk, failures, fail_fast)
    else:
        records = chunk.records or []
    n_in = len(records) + len(failures)
    outputs, errors = pre.apply(records)
    if not errors and not failures:
        lines = _lines_at_once(outputs)
        if lines is not None:
            return ChunkResult(b"\n".join(lines) + b"\n" if lines else b"", n_in, len(lines))

    def failure(index: int, stage: str, message: str) -> Failure:
        position = positions[index] if positions is not None else chunk.first + index
        raw = chunk.lines[position - chunk.first] if chunk.lines is not None else _raw_record(records[index])
        return Failure(chunk.source, chunk.unit, position, stage, message, raw)

    parts: list[bytes] = []
    append = parts.append
    for index, value in enumerate(outputs):
        if errors and index in errors:
            failures.append(
                failure(index, Stage.PREPROCESS, f"pre_processing raised {describe_exception(errors[index])}")
            )
            if fail_fast:
                break
            continue
        if value is None:
            continue
        try:
            if type(value) is dict:
                append(dumps(value))
            else:
                parts.extend(_serialise_many(value))
        except (TypeError, orjson.JSONEncodeError) as exc:
            failures.append(failure(index, Stage.SERIALIZE, f"output cannot be serialised to JSON: {exc}"))
            if fail_fast:
                break
    if len(failures) > 1:
        failures.sort(key=lambda f: f.position)
    if fail_fast and failures:  # the first bad record ends the run: count what came before it
        failures = failures[:1]
        stop = failures[0].position
        n_in = 1 + sum(1 for p in (positions or range(chunk.first, chunk.first + len(records))) if p < stop)
    output = b"\n".join(parts) + b"\n" if parts else b""
    return ChunkResult(output, n_in, len(parts), failures)


def _lines_at_once(outputs: list[Any]) -> list[bytes] | None:
    """The output lines of a chunk whose outputs are all dicts or None, serialised in one pass; None
    when one is a list or DataFrame, or cannot be serialised: the loop over each output handles those."""
    kinds = set(map(type, outputs))
    if not kinds <= _ONE_LINE_EACH:
        return None
    if type(None) in kinds:
        outputs = [value for value in outputs if value is not None]
    try:
        return dumps_many(outputs)
    except TypeError:
        return None


def _serialise_many(value: Any) -> list[bytes]:
    """A list (or DataFrame) returned by pre_processing: one output line per element."""
    return [dumps(item) for item in records_of(value)]


def _raw_record(record: Any) -> bytes | None:
    """The record for the error output; None when even ``repr`` fails (nested deeper than Python recurses)."""
    try:
        return dumps(record)
    except (TypeError, orjson.JSONEncodeError):
        pass
    try:
        return repr(record).encode()
    except (RecursionError, ValueError):
        return None


def unprocessed(chunk: Chunk, stage: Stage, message: str) -> list[Failure]:
    """A failure for every item of a chunk that was never processed (its worker process died)."""
    if chunk.lines is not None:
        items: list[tuple[int, bytes | None]] = [
            (chunk.first + i, line) for i, line in enumerate(chunk.lines) if line.strip()
        ]
    else:
        items = [(chunk.first + i, _raw_record(record)) for i, record in enumerate(chunk.records or [])]
    failures = [Failure(chunk.source, chunk.unit, position, stage, message, raw) for position, raw in items]
    return [*failures, chunk.fatal] if chunk.fatal is not None else failures
