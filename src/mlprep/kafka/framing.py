"""Kafka message values to records and back: JSON, and Avro in the framings found in the wild.

- ``container``: a one-record Avro object container file per message (ZTF's alert stream): the
  writer schema travels with every message.
- ``schemaless``: the bare record, schema from ``AVRO_SCHEMA_PATH`` (Fink's simulator streams).
- ``key-schema``: the bare record, its JSON schema in the message key (Fink's outgoing streams).
- ``confluent``: magic byte 0, a 4-byte schema id, the bare record; schema from ``SCHEMA_REGISTRY_URL``.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import Any

import fastavro
import httpx
import orjson

from mlprep.errors import MlprepError
from mlprep.redaction import redact
from mlprep.runtime.codecs.avro import MAGIC, load_schema
from mlprep.runtime.codecs.avro_limits import Container, RecordReader
from mlprep.runtime.core import CUTOUT_FIELDS
from mlprep.runtime.serialization import dumps
from mlprep.settings import Settings

FRAMINGS = ("auto", "container", "schemaless", "key-schema", "confluent")


class DecodeError(ValueError):
    """A message that cannot be decoded; it goes to the dead-letter topic."""


class MessageDecoder:
    def __init__(
        self,
        fmt: str,
        framing: str = "auto",
        schema_path: str | Path | None = None,
        registry_url: str | None = None,
        max_record_bytes: int = Settings.model_fields["max_record_bytes"].default,
    ) -> None:
        if framing not in FRAMINGS:
            raise MlprepError(f"INPUT_AVRO_FRAMING must be one of {', '.join(FRAMINGS)}, not {framing!r}")
        if fmt == "avro" and framing == "schemaless" and not schema_path:
            raise MlprepError("INPUT_AVRO_FRAMING=schemaless needs AVRO_SCHEMA_PATH")
        if fmt == "avro" and framing == "confluent" and not registry_url:
            raise MlprepError("INPUT_AVRO_FRAMING=confluent needs SCHEMA_REGISTRY_URL")
        self.fmt, self.framing, self.registry_url = fmt, framing, registry_url
        self.limit = max_record_bytes
        self.schema = load_schema(schema_path) if schema_path else None
        self._reader = RecordReader(self.schema, self.limit) if self.schema is not None else None
        self._key_schemas: dict[bytes, RecordReader] = {}
        self._writer_schemas: dict[bytes, RecordReader] = {}
        self._registry: dict[int, RecordReader] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> MessageDecoder:
        """INPUT_FORMAT, INPUT_AVRO_FRAMING, AVRO_SCHEMA_PATH, SCHEMA_REGISTRY_URL, MAX_RECORD_BYTES."""
        return cls(
            settings.input_format,
            settings.input_avro_framing,
            settings.avro_schema_path,
            settings.schema_registry_url,
            settings.max_record_bytes,
        )

    def decode(self, value: bytes | None, key: bytes | None = None) -> list[Any]:
        """The records of one message (a container may hold several)."""
        if not value:
            raise DecodeError("empty message")
        if self.fmt == "json":
            try:
                record = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                raise DecodeError(f"invalid JSON: {exc}") from exc
            return record if isinstance(record, list) else [record]
        framing = self.framing if self.framing != "auto" else self._detect(value, key)
        try:
            if framing == "container":
                return self._container(value)
            if framing == "confluent":
                return [self._confluent(value)]
            reader = self._key_schema(key) if framing == "key-schema" else self._reader
            if reader is None:
                raise DecodeError("INPUT_AVRO_FRAMING=schemaless needs AVRO_SCHEMA_PATH")
            return [reader.read(io.BytesIO(value))]
        except DecodeError:
            raise
        except Exception as exc:
            raise DecodeError(f"Avro ({framing}) decode error: {type(exc).__name__}: {exc}") from exc

    def _detect(self, value: bytes, key: bytes | None) -> str:
        if value.startswith(MAGIC):
            return "container"
        if value[:1] == b"\x00" and len(value) > 5 and self.registry_url:
            return "confluent"
        if key and key[:1] == b"{":
            return "key-schema"
        if self.schema is not None:
            return "schemaless"
        raise DecodeError(
            "cannot tell the Avro framing of this message (no container header, no schema in "
            "the key): set AVRO_SCHEMA_PATH, SCHEMA_REGISTRY_URL or INPUT_AVRO_FRAMING"
        )

    def _container(self, value: bytes) -> list[Any]:
        """A container file in one message. Every message repeats the same writer schema: it is parsed
        once and cached by its bytes (fastavro.reader would parse it again for each message)."""
        container = Container(io.BytesIO(value), self.limit)
        reader = self._writer_schemas.get(container.schema_text)
        if reader is None:
            reader = RecordReader(fastavro.parse_schema(orjson.loads(container.schema_text)), self.limit)
            with self._lock:
                self._writer_schemas[container.schema_text] = reader
        return [reader.read(block) for count, block in container.blocks() for _ in range(count)]

    def _key_schema(self, key: bytes | None) -> RecordReader:
        if not key:
            raise DecodeError("INPUT_AVRO_FRAMING=key-schema but the message has no key")
        with self._lock:
            if key not in self._key_schemas:
                try:
                    self._key_schemas[key] = RecordReader(fastavro.parse_schema(orjson.loads(key)), self.limit)
                except Exception as exc:
                    raise DecodeError(f"the message key is not an Avro schema: {exc}") from exc
            return self._key_schemas[key]

    def _confluent(self, value: bytes) -> Any:
        if value[:1] != b"\x00" or len(value) < 5:
            raise DecodeError("not in the Confluent wire format (magic byte 0 + schema id)")
        schema_id = int.from_bytes(value[1:5], "big")
        with self._lock:
            reader = self._registry.get(schema_id)
        if reader is None:
            url = f"{(self.registry_url or '').rstrip('/')}/schemas/ids/{schema_id}"
            try:
                answer = httpx.get(url, timeout=10)
                answer.raise_for_status()
                reader = RecordReader(fastavro.parse_schema(orjson.loads(answer.json()["schema"])), self.limit)
            except Exception as exc:
                raise DecodeError(f"schema {schema_id} not found in the schema registry: {redact(str(exc))}") from exc
            with self._lock:
                self._registry[schema_id] = reader
        return reader.read(io.BytesIO(value[5:]))


class MessageEncoder:
    def __init__(
        self, fmt: str, schema_path: str | Path | None = None, framing: str = "schemaless", skip_cutouts: bool = False
    ) -> None:
        self.fmt, self.framing = fmt, framing
        self.schema = None
        if fmt == "avro":
            if not schema_path:
                raise MlprepError("OUTPUT_FORMAT=avro needs OUTPUT_AVRO_SCHEMA_PATH")
            schema = orjson.loads(Path(schema_path).read_bytes())
            if skip_cutouts:  # some published schemas do not let the cutouts be null: they leave the schema
                schema = without_cutouts(schema)
            self.schema = fastavro.parse_schema(schema)

    def encode(self, record: Any) -> bytes:
        if self.fmt == "json":
            return dumps(record)
        buffer = io.BytesIO()
        if self.framing == "container":
            fastavro.writer(buffer, self.schema, [record])
        else:
            fastavro.schemaless_writer(buffer, self.schema, record)
        return buffer.getvalue()


def without_cutouts(schema: dict[str, Any]) -> dict[str, Any]:
    fields = [f for f in schema.get("fields", []) if f.get("name") not in CUTOUT_FIELDS]
    return {**schema, "fields": fields}
