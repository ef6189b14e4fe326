"""Avro: object container files (the writer schema travels in the file) and schemaless records
written one after another (the schema comes from ``--avro-schema`` / ``AVRO_SCHEMA_PATH``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import fastavro
import orjson

from mlprep.errors import InputFormatError
from mlprep.runtime.codecs.avro_limits import Container, RecordReader, RecordTooLarge
from mlprep.runtime.codecs.base import AVRO_MAGIC, CHUNK_RECORDS, DEFAULT_MAX_RECORD_BYTES, peek_at_least, tell
from mlprep.runtime.outcomes import Chunk, Failure, Stage

MAGIC = AVRO_MAGIC  # the name the Kafka framing imports


def load_schema(path: str | Path) -> Any:
    """Parse an ``.avsc`` file, with errors that name the file."""
    path = Path(path)
    try:
        return fastavro.parse_schema(orjson.loads(path.read_bytes()))
    except FileNotFoundError as exc:
        raise InputFormatError(f"Avro schema file not found: {path}") from exc
    except orjson.JSONDecodeError as exc:
        raise InputFormatError(f"Avro schema {path} is not valid JSON: {exc}") from exc
    except Exception as exc:  # fastavro's SchemaParseException and friends
        raise InputFormatError(f"Avro schema {path} is not a valid Avro schema: {exc}") from exc


class AvroCodec:
    name = "avro"

    def __init__(self, schema_path: str | Path | None = None, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> None:
        self.schema_path = schema_path
        self.max_record_bytes = max_record_bytes
        self._schema = load_schema(schema_path) if schema_path else None

    def chunks(self, stream: BinaryIO, source: str) -> Iterator[Chunk]:
        head, stream = peek_at_least(stream, len(AVRO_MAGIC))
        if head == AVRO_MAGIC:
            return self._container(stream, source)
        if self._schema is None:
            raise InputFormatError(
                f"{source}: not an Avro object container file (no 'Obj\\x01' header); for schemaless "
                "Avro pass --avro-schema PATH (env AVRO_SCHEMA_PATH)"
            )
        return self._schemaless(stream, source)

    def _container(self, stream: BinaryIO, source: str) -> Iterator[Chunk]:
        """Blocks of a container file; its writer schema comes from the file and is checked like any other."""
        pending = _Pending(source)
        try:
            container = Container(stream, self.max_record_bytes)
            reader = RecordReader(fastavro.parse_schema(orjson.loads(container.schema_text)), self.max_record_bytes)
            read = reader.read
            for count, block in container.blocks():
                for _ in range(count):
                    try:
                        pending.records.append(read(block))
                    except RecordTooLarge as exc:
                        yield from pending.too_large(exc)
                if len(pending.records) >= CHUNK_RECORDS:
                    yield pending.flush(offset=tell(stream))
        except Exception as exc:
            yield _fatal(source, pending.first, pending.records, exc, stream)
            return
        yield pending.flush(idle=True, offset=tell(stream))

    def _schemaless(self, stream: BinaryIO, source: str) -> Iterator[Chunk]:
        read = RecordReader(self._schema, self.max_record_bytes).read
        pending = _Pending(source)
        while _peek(stream, 1):
            try:
                pending.records.append(read(stream))
            except RecordTooLarge as exc:
                yield from pending.too_large(exc)
                continue
            except Exception as exc:
                yield _fatal(source, pending.first, pending.records, exc, stream)
                return
            if len(pending.records) >= CHUNK_RECORDS:
                yield pending.flush(offset=tell(stream))
        yield pending.flush(idle=True, offset=tell(stream))


class _Pending:
    """The records read so far and the place of the first, handed on as chunks."""

    def __init__(self, source: str) -> None:
        self.source, self.first, self.records = source, 1, []

    def flush(self, idle: bool = False, offset: int = 0) -> Chunk:
        chunk = Chunk(self.source, "record", self.first, records=self.records, idle=idle, offset=offset)
        self.first += len(self.records)
        self.records = []
        return chunk

    def too_large(self, exc: RecordTooLarge) -> Iterator[Chunk]:
        """What came before, then the record over the limit as a failure of its own (its bytes are skipped)."""
        yield self.flush()
        failure = Failure(self.source, "record", self.first, Stage.DECODE, f"Avro record not decoded: {exc}", None)
        yield Chunk(self.source, "record", self.first, records=[], failures=[failure])
        self.first += 1


def _fatal(source: str, first: int, records: list[Any], exc: Exception, stream: BinaryIO) -> Chunk:
    position = first + len(records)
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    message = f"Avro decode error at byte {tell(stream)}: {reason}; the rest of this input is not read"
    failure = Failure(source, "record", position, Stage.DECODE, message, None)
    return Chunk(source, "record", first, records=records, fatal=failure, idle=True)


def _peek(stream: BinaryIO, size: int) -> bytes:
    peek = getattr(stream, "peek", None)
    if peek is None:
        raise InputFormatError("Avro input needs a buffered binary stream")
    return peek(size)[:size]
