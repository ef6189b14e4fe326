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
from mlprep.runtime.codecs.base import CHUNK_RECORDS, DEFAULT_MAX_RECORD_BYTES, peek_at_least, tell
from mlprep.runtime.outcomes import Chunk, Failure, Stage

MAGIC = b"Obj\x01"


def load_schema(path: str | Path) -> Any:
    """Parse an ``.avsc`` file, with errors that name the file."""
    path = Path(path)
    try:
        return fastavro.parse_schema(orjson.loads(path.read_bytes()))
    except FileNotFoundError:
        raise InputFormatError(f"Avro schema file not found: {path}")
    except orjson.JSONDecodeError as exc:
        raise InputFormatError(f"Avro schema {path} is not valid JSON: {exc}")
    except Exception as exc:  # fastavro's SchemaParseException and friends
        raise InputFormatError(f"Avro schema {path} is not a valid Avro schema: {exc}")


class AvroCodec:
    name = "avro"

    def __init__(self, schema_path: str | Path | None = None, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> None:
        self.schema_path = schema_path
        self.max_record_bytes = max_record_bytes
        self._schema = load_schema(schema_path) if schema_path else None

    def chunks(self, stream: BinaryIO, source: str) -> Iterator[Chunk]:
        head, stream = peek_at_least(stream, len(MAGIC))
        if head == MAGIC:
            return self._container(stream, source)
        if self._schema is None:
            raise InputFormatError(
                f"{source}: not an Avro object container file (no 'Obj\\x01' header); for schemaless "
                "Avro pass --avro-schema PATH (env AVRO_SCHEMA_PATH)"
            )
        return self._schemaless(stream, source)

    def _container(self, stream: BinaryIO, source: str) -> Iterator[Chunk]:
        """Blocks of a container file; its writer schema comes from the file and is checked like any other."""
        records: list[Any] = []
        first = 1
        try:
            container = Container(stream, self.max_record_bytes)
            reader = RecordReader(fastavro.parse_schema(orjson.loads(container.schema_text)), self.max_record_bytes)
            read = reader.read
            for count, block in container.blocks():
                for _ in range(count):
                    try:
                        records.append(read(block))
                    except RecordTooLarge as exc:
                        yield Chunk(source, "record", first, records=records)
                        first += len(records)
                        records = []
                        yield _too_large(source, first, exc)
                        first += 1
                if len(records) >= CHUNK_RECORDS:
                    yield Chunk(source, "record", first, records=records, offset=tell(stream))
                    first += len(records)
                    records = []
        except Exception as exc:
            yield _fatal(source, first, records, exc, stream)
            return
        yield Chunk(source, "record", first, records=records, idle=True, offset=tell(stream))

    def _schemaless(self, stream: BinaryIO, source: str) -> Iterator[Chunk]:
        reader = RecordReader(self._schema, self.max_record_bytes)
        records: list[Any] = []
        first = 1
        while True:
            ahead = _peek(stream, 1)
            if not ahead:
                break
            try:
                records.append(reader.read(stream))
            except RecordTooLarge as exc:
                yield Chunk(source, "record", first, records=records)
                first += len(records)
                records = []
                yield _too_large(source, first, exc)
                first += 1
                continue
            except Exception as exc:
                yield _fatal(source, first, records, exc, stream)
                return
            if len(records) >= CHUNK_RECORDS:
                yield Chunk(source, "record", first, records=records, offset=tell(stream))
                first += len(records)
                records = []
        yield Chunk(source, "record", first, records=records, idle=True, offset=tell(stream))


def _too_large(source: str, position: int, exc: RecordTooLarge) -> Chunk:
    failure = Failure(source, "record", position, Stage.DECODE, f"Avro record not decoded: {exc}", None)
    return Chunk(source, "record", position, records=[], failures=[failure])


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
