"""Pick the codec of an input: explicit format, then Avro magic bytes, then file extension, then
a look at the first line."""

from __future__ import annotations

from typing import BinaryIO

import orjson

from mlprep.errors import InputFormatError
from mlprep.runtime.codecs.base import AVRO_MAGIC, DEFAULT_MAX_RECORD_BYTES, Codec

FORMATS = ("auto", "jsonl", "json", "avro")
_EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".avro": "avro"}
_PEEK = 64 * 1024


def detect_format(stream: BinaryIO, source: str, avro_schema: str | None = None) -> str:
    """The format name of ``stream`` (buffered: only peeked at, nothing consumed)."""
    head = stream.peek(_PEEK)[:_PEEK] if hasattr(stream, "peek") else b""
    if head.startswith(AVRO_MAGIC):
        return "avro"
    suffix = "." + source.rsplit(".", 1)[-1].lower() if "." in source else ""
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not text:
        return "jsonl"
    if text[:1] == b"[":
        return "json"
    scalar = text[:1] in b'"-tfn' or text[:1].isdigit()
    if text[:1] == b"{" or (scalar and not avro_schema):
        newline = text.find(b"\n")
        if newline < 0:
            return "json"  # one value, or a first record still arriving: the document reader takes both
        try:
            orjson.loads(text[:newline])
        except orjson.JSONDecodeError:
            return "json"  # a pretty-printed document
        return "jsonl"
    if avro_schema:
        return "avro"
    raise InputFormatError(
        f"{source}: cannot tell the input format (starts with {head[:16]!r}): it is neither JSON, "
        "JSON Lines nor an Avro container file; pass --input-format, and --avro-schema for schemaless Avro"
    )


def detect_codec(
    stream: BinaryIO,
    source: str,
    input_format: str = "auto",
    avro_schema: str | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Codec:
    """The codec for ``stream``: ``input_format`` when given, else detected."""
    if input_format not in FORMATS:
        raise InputFormatError(f"unknown input format {input_format!r}: use one of {', '.join(FORMATS)}")
    name = detect_format(stream, source, avro_schema) if input_format == "auto" else input_format
    return open_codec(name, avro_schema, max_record_bytes)


def open_codec(name: str, avro_schema: str | None = None, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> Codec:
    """The codec called ``name`` (jsonl, json, avro), imported when first used (fastavro takes a while)."""
    if name == "jsonl":
        from mlprep.runtime.codecs.jsonl import JsonlCodec

        return JsonlCodec(max_record_bytes)
    if name == "json":
        from mlprep.runtime.codecs.json_document import JsonDocumentCodec

        return JsonDocumentCodec(max_record_bytes)
    if name == "avro":
        from mlprep.runtime.codecs.avro import AvroCodec

        return AvroCodec(avro_schema, max_record_bytes)
    raise ValueError(f"unknown input format {name!r}: use jsonl, json or avro")
