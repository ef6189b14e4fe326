"""The codec interface: read a binary stream and yield ``Chunk``s of lines or records."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO, Protocol

from mlprep.process import Chunk

CHUNK_BYTES = 1 << 16  # 64 KiB: small enough to stay in cache, large enough to amortise
CHUNK_RECORDS = 500


class Codec(Protocol):
    """Splits one input into chunks; decode errors that end the input come as ``Chunk.fatal``."""

    name: str

    def chunks(self, stream: BinaryIO, source: str) -> Iterator[Chunk]: ...


def read_some(stream: BinaryIO, size: int = CHUNK_BYTES) -> bytes:
    """At most ``size`` bytes with a single read: what a pipe holds now, without waiting for more."""
    read1 = getattr(stream, "read1", None)
    return read1(size) if read1 is not None else stream.read(size)


def tell(stream: BinaryIO) -> int:
    try:
        return stream.tell()
    except (OSError, ValueError):
        return 0


def open_codec(name: str, avro_schema: str | None = None) -> Codec:
    """The codec called ``name`` (jsonl, json, avro)."""
    from mlprep.codecs.avro import AvroCodec
    from mlprep.codecs.json_document import JsonDocumentCodec
    from mlprep.codecs.jsonl import JsonlCodec

    if name == "jsonl":
        return JsonlCodec()
    if name == "json":
        return JsonDocumentCodec()
    if name == "avro":
        return AvroCodec(avro_schema)
    raise ValueError(f"unknown input format {name!r}: use jsonl, json or avro")
