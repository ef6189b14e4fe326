"""Raw JSON lines (or JSON document values) decoded where they are processed: in the main process, a
worker process or a Spark executor. Every front end reports a line that is not JSON the same way."""

from __future__ import annotations

from typing import Any

import orjson

from mlprep.runtime.outcomes import Chunk, Failure, Stage


def decode_lines(chunk: Chunk, failures: list[Failure], stop_at_first: bool = False) -> tuple[list[Any], list[int]]:
    """The records of ``chunk.lines`` and the place of each; blank lines are skipped and an invalid one
    is a ``decode`` failure appended to ``failures`` (the first one ends the work with ``stop_at_first``)."""
    records: list[Any] = []
    positions: list[int] = []
    assert chunk.lines is not None
    for offset, line in enumerate(chunk.lines):
        position = chunk.first + offset
        try:
            records.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            if not line.strip():
                continue
            failures.append(
                Failure(chunk.source, chunk.unit, position, Stage.DECODE, _invalid(chunk, offset, exc), line)
            )
            if stop_at_first:
                break
            continue
        positions.append(position)
    return records, positions


def _invalid(chunk: Chunk, offset: int, exc: orjson.JSONDecodeError) -> str:
    """Where the JSON went wrong: in the line, or in the input when the codec gave each record's place."""
    if chunk.places is None:
        return f"invalid JSON at column {exc.colno}: {exc.msg}"
    line, column = chunk.places[offset]
    column = exc.colno if exc.lineno > 1 else column + exc.colno - 1
    return f"invalid JSON at line {line + exc.lineno - 1} column {column}: {exc.msg}"
