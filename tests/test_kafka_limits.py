"""The Kafka processor against messages that ask for more memory than a record may take."""

from __future__ import annotations

import io
import json
import zlib

import fastavro
from conftest import write_files
from test_codecs_limits import NULLS, avro_bomb, zigzag
from test_kafka import headers_of, produce, read, start_processor, topic

LIMIT = 100_000
BLOB = {"type": "record", "name": "Blob", "fields": [{"name": "data", "type": "bytes"}]}


def container(schema: dict, block: bytes, count: int, codec: str = "null") -> bytes:
    """A one-block container file holding ``block`` as its data, whatever it declares."""
    buffer = io.BytesIO()
    fastavro.writer(buffer, fastavro.parse_schema(schema), [], codec=codec, sync_marker=b"S" * 16)
    return buffer.getvalue() + zigzag(count) + zigzag(len(block)) + block + b"S" * 16


def test_avro_bombs_are_dead_lettered_and_good_messages_still_flow(kafka_broker, tmp_path):
    source, target, dead = topic("bombs"), topic("bombs-out"), topic("bombs-dlq")
    schema_path = tmp_path / "nulls.avsc"
    schema_path.write_text(json.dumps(NULLS))
    parsed = fastavro.parse_schema(NULLS)
    good = io.BytesIO()
    fastavro.schemaless_writer(good, parsed, {"items": [None, None, None]})
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    inflates = deflater.compress(zigzag(10 * LIMIT) + bytes(10 * LIMIT)) + deflater.flush()  # ~1 KB -> 1 MB
    produce(
        kafka_broker,
        source,
        [
            (b"good-1", good.getvalue()),
            (b"schemaless-bomb", avro_bomb()),
            (b"container-bomb", container(NULLS, avro_bomb(), 1)),
            (b"deflate-bomb", container(BLOB, inflates, 1, codec="deflate")),
            (b"good-2", good.getvalue()),
        ],
    )
    folder = write_files(tmp_path / "pp", {"preprocessing.py": "def pre_processing(r):\n    return r\n"})
    processor = start_processor(
        kafka_broker,
        tmp_path,
        folder,
        INPUT_TOPIC=source,
        OUTPUT_TOPIC=target,
        INPUT_FORMAT="avro",
        AVRO_SCHEMA_PATH=str(schema_path),
        DEAD_LETTER_TOPIC=dead,
        MAX_RECORD_BYTES=str(LIMIT),
    )
    try:
        out = read(kafka_broker, target, 2)
        assert sorted(key for key, _ in out) == [b"good-1", b"good-2"]
        assert all(json.loads(value) == {"items": [None, None, None]} for _, value in out)
        letters = read(kafka_broker, dead, 3)
        assert sorted(key for key, _ in letters) == [b"container-bomb", b"deflate-bomb", b"schemaless-bomb"]
        headers = headers_of(kafka_broker, dead)
        assert {h["mlprep-error-stage"] for h in headers} == {b"decode"}
        assert all(b"MAX_RECORD_BYTES" in h["mlprep-error"] for h in headers), headers
        assert any(b"declares 1,000,000,000,000 array items" in h["mlprep-error"] for h in headers)
        health = processor.client.get("/health").json()["kafka"]
        assert health["dead_lettered"] == 3
    finally:
        processor.stop()
