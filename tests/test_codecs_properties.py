"""Properties of the input codecs: whatever the read sizes, every record written comes back, and
no input, however broken, makes a codec raise instead of reporting a decode failure."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import fastavro
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlprep.batch.chunks import process_chunk
from mlprep.runtime.codecs.avro import AvroCodec
from mlprep.runtime.codecs.json_document import JsonDocumentCodec
from mlprep.runtime.codecs.jsonl import JsonlCodec
from mlprep.runtime.core import Preprocessor
from mlprep.runtime.loader import LoadedPreprocessing

BOM = b"\xef\xbb\xbf"
EXAMPLES = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
IDENTITY = Preprocessor(LoadedPreprocessing(Path("identity.py"), lambda record: record))


class Trickle(io.RawIOBase):
    """A pipe that never hands over more than ``size`` bytes at once."""

    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.size, self.pos = data, size, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        piece = self.data[self.pos : self.pos + min(self.size, len(buffer))]
        buffer[: len(piece)] = piece
        self.pos += len(piece)
        return len(piece)


def trickle(data: bytes, size: int) -> io.BufferedReader:
    return io.BufferedReader(Trickle(data, size))


def decoded(codec: Any, data: bytes, size: int) -> list[Any]:
    """Every record the codec finds, asserting that it reported no failure."""
    records: list[Any] = []
    for chunk in codec.chunks(trickle(data, size), "input"):
        assert chunk.fatal is None, chunk.fatal
        assert not chunk.failures, chunk.failures
        if chunk.lines is not None:
            records.extend(orjson.loads(line) for line in chunk.lines if line.strip())
        else:
            records.extend(chunk.records or [])
    return records


def accounted(codec: Any, data: bytes, size: int) -> None:
    """Reading ``data`` never raises: each chunk is processed, failures are reported with a place."""
    for chunk in codec.chunks(trickle(data, size), "input"):
        result = process_chunk(IDENTITY, chunk)
        for failure in [*result.failures, *([chunk.fatal] if chunk.fatal else [])]:
            assert failure.source == "input" and failure.position >= 1 and failure.message


# JSON values as orjson reads them: 64-bit integers, finite floats, any text (escapes, non-ASCII).
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5), max_leaves=20
)
records = st.lists(values, max_size=20)
blanks = st.sampled_from([" ", "\n", "\r\n", "\t", "  \n\t"])
read_sizes = st.integers(min_value=1, max_value=300)


def dumped(value: Any, ascii_only: bool, indent: int | None) -> str:
    return json.dumps(value, ensure_ascii=ascii_only, indent=indent)


@EXAMPLES
@given(records, st.booleans(), st.booleans(), st.sampled_from(["\n", "\r\n"]), st.booleans(), read_sizes)
def test_jsonl_round_trip(items, ascii_only, bom, newline, last_newline, size):
    text = newline.join(dumped(item, ascii_only, None) for item in items) + (newline if last_newline else "")
    data = (BOM if bom else b"") + text.encode()
    for read_size in (1, 2, 3, size):
        assert decoded(JsonlCodec(), data, read_size) == items


@EXAMPLES
@given(records, st.booleans(), st.sampled_from([None, 0, 2]), st.booleans(), blanks, read_sizes)
def test_json_array_round_trip(items, ascii_only, indent, bom, blank, size):
    data = (BOM if bom else b"") + (blank + dumped(items, ascii_only, indent) + blank).encode()
    for read_size in (1, 2, 3, size):
        assert decoded(JsonDocumentCodec(), data, read_size) == items


@EXAMPLES
@given(st.lists(values.filter(lambda v: not isinstance(v, list)), max_size=10), st.booleans(), blanks, read_sizes)
def test_concatenated_json_documents_round_trip(items, ascii_only, blank, size):
    data = blank.join(dumped(item, ascii_only, 2 if ascii_only else None) for item in items).encode()
    for read_size in (1, 2, 3, size):
        assert decoded(JsonDocumentCodec(), data, read_size) == items


TRICKY = [
    {"flag": True, "off": False, "none": None, "e": 1.5e-7, "E": -2e300, "big": 18446744073709551615},
    {"s": 'é"\\/\b\f\n\r\t\u0001😀', "k\u00e9y": ["", [], {}, [[{}]]]},
    -0.0,
    "true",
    123456789,
]


@pytest.mark.parametrize("ascii_only", [True, False])
def test_every_read_size_splits_nothing(ascii_only):
    """Each read size from 1 byte to the whole input cuts literals, escapes and numbers somewhere."""
    array = BOM + dumped(TRICKY, ascii_only, None).encode()
    lines = BOM + "\n".join(dumped(item, ascii_only, None) for item in TRICKY).encode()
    for size in range(1, len(array) + 1):
        assert decoded(JsonDocumentCodec(), array, size) == TRICKY
        assert decoded(JsonlCodec(), lines, size) == TRICKY


# Avro: one schema read by fastavro directly, one with an array of zero-size items (checked first).
PLAIN = {
    "type": "record",
    "name": "Plain",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "name", "type": "string"},
        {"name": "score", "type": ["null", "double"]},
        {"name": "tags", "type": {"type": "map", "values": "int"}},
        {"name": "raw", "type": "bytes"},
    ],
}
EXPOSED = {
    "type": "record",
    "name": "Exposed",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "holes", "type": {"type": "array", "items": "null"}},
        {"name": "empties", "type": {"type": "array", "items": {"type": "record", "name": "E", "fields": []}}},
        {"name": "words", "type": {"type": "array", "items": "string"}},
    ],
}
int32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
plain_records = st.fixed_dictionaries(
    {
        "id": st.integers(min_value=-(2**63), max_value=2**63 - 1),
        "name": st.text(),
        "score": st.none() | st.floats(allow_nan=False),
        "tags": st.dictionaries(st.text(), int32, max_size=4),
        "raw": st.binary(max_size=20),
    }
)
exposed_records = st.fixed_dictionaries(
    {
        "id": st.integers(min_value=0, max_value=10**6),
        "holes": st.lists(st.none(), max_size=30),
        "empties": st.lists(st.just({}), max_size=5),
        "words": st.lists(st.text(max_size=5), max_size=5),
    }
)
avro_cases = st.one_of(
    st.tuples(st.just(PLAIN), st.lists(plain_records, max_size=12)),
    st.tuples(st.just(EXPOSED), st.lists(exposed_records, max_size=12)),
)


@EXAMPLES
@given(avro_cases, st.sampled_from(["null", "deflate"]), st.sampled_from([0, 1, 64]), read_sizes)
def test_avro_container_round_trip(case, compression, sync_interval, size):
    schema, items = case
    buffer = io.BytesIO()
    fastavro.writer(buffer, fastavro.parse_schema(schema), items, codec=compression, sync_interval=sync_interval)
    for read_size in (1, 7, size):
        assert decoded(AvroCodec(), buffer.getvalue(), read_size) == items


@EXAMPLES
@given(avro_cases, read_sizes)
def test_schemaless_avro_round_trip(tmp_path_factory, case, size):
    schema, items = case
    schema_path = tmp_path_factory.mktemp("schema") / "schema.avsc"
    schema_path.write_text(json.dumps(schema))
    buffer = io.BytesIO()
    for item in items:
        fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema), item)
    for read_size in (1, 7, size):
        assert decoded(AvroCodec(schema_path), buffer.getvalue(), read_size) == items


# Fuzz: broken inputs, from random bytes and from valid documents with a few bytes changed.
def damaged(valid: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    edit = st.tuples(st.integers(min_value=0, max_value=10_000), st.binary(max_size=3), st.integers(0, 3))

    def apply(data: bytes, edits: list[tuple[int, bytes, int]]) -> bytes:
        for at, insert, remove in edits:
            at = at % (len(data) + 1)
            data = data[:at] + insert + data[at + remove :]
        return data

    return st.builds(apply, valid, st.lists(edit, min_size=1, max_size=4))


json_inputs = st.binary(max_size=200) | damaged(records.map(lambda r: json.dumps(r).encode()))
jsonl_inputs = st.binary(max_size=200) | damaged(records.map(lambda r: "\n".join(json.dumps(v) for v in r).encode()))


def avro_bytes(schema: dict[str, Any], items: list[Any], container: bool) -> bytes:
    buffer = io.BytesIO()
    if container:
        fastavro.writer(buffer, fastavro.parse_schema(schema), items, sync_interval=0)
    else:
        for item in items:
            fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema), item)
    return buffer.getvalue()


@FUZZ
@given(json_inputs, read_sizes, st.sampled_from([5, 1 << 20]))
def test_fuzz_json_document(data, size, limit):
    accounted(JsonDocumentCodec(max_record_bytes=limit), data, size)


@FUZZ
@given(jsonl_inputs, read_sizes, st.sampled_from([5, 1 << 20]))
def test_fuzz_jsonl(data, size, limit):
    accounted(JsonlCodec(max_record_bytes=limit), data, size)


@FUZZ
@given(st.data(), read_sizes, st.booleans())
def test_fuzz_avro(tmp_path_factory, data, size, container):
    schema = EXPOSED
    items = data.draw(st.lists(exposed_records, max_size=4))
    broken = data.draw(damaged(st.just(avro_bytes(schema, items, container))) | st.binary(max_size=100))
    if container:
        broken = b"Obj\x01" + broken[4:]
    schema_path = tmp_path_factory.mktemp("schema") / "schema.avsc"
    schema_path.write_text(json.dumps(schema))
    accounted(AvroCodec(schema_path, max_record_bytes=1 << 16), broken, size)
