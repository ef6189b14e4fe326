"""What happens to a record, in one vocabulary for every front end: batch errors and dead letters, REST
``errors[]``, Kafka dead-letter headers and metrics labels all name the same ``Stage``.

A ``Chunk`` is a slice of one input as a codec hands it on; a ``Failure`` is one record that did not
make it, with its place, stage, reason and raw input.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Stage(StrEnum):
    """Where a record failed."""

    OPEN = "open"  # the input could not be opened or read
    DECODE = "decode"  # the bytes are not a record: invalid JSON or Avro, not an object, over a limit
    PREPROCESS = "preprocess"  # pre_processing (or pre_processing_batch) raised
    SERIALIZE = "serialize"  # what pre_processing returned cannot be written (JSON or the output Avro schema)
    TIMEOUT = "timeout"  # pre_processing did not finish within REQUEST_TIMEOUT_S
    WORKER = "worker"  # the worker process holding the record died
    MODEL = "model"  # the model refused or failed the record (in process), or its server did (the bridge)
    PRODUCE = "produce"  # the broker refused the output
    HANDLE = "handle"  # an unexpected error of the front end itself, for that record


@dataclass(slots=True)
class Failure:
    """One bad record: where it was, at which stage it failed, why, and its raw input."""

    source: str
    unit: str  # "line" or "record"
    position: int
    stage: Stage
    message: str
    raw: bytes | None = None

    def where(self) -> str:
        return f"{self.source}: {self.unit} {self.position}"


@dataclass(slots=True)
class Chunk:
    """A slice of one input: JSONL ``lines`` (decoded where processed) or decoded ``records``."""

    source: str
    unit: str
    first: int
    lines: list[bytes] | None = None
    records: list[Any] | None = None
    fatal: Failure | None = None  # the input cannot be read past this chunk
    failures: list[Failure] | None = None  # records the codec could not decode (a chunk of their own)
    places: list[tuple[int, int]] | None = None  # line and column where each of ``lines`` starts
    idle: bool = False  # the input had nothing more at once: flush output after this chunk
    offset: int = 0  # bytes of the input consumed (progress)
