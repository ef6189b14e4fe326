"""What one Avro record may allocate.

Avro lets an array block declare any item count; items that encode in zero bytes (null, an empty
record, ...) read no input, so a message of a hundred bytes can ask the decoder for 10^12 items and
grow until the process is killed. Only schemas with an array of such items are exposed: for them
each record is first walked (cheaply: zero-size items are counted, not read) and refused when its
declared items or its bytes exceed the limit. Every other schema is decoded by fastavro directly.
"""

from __future__ import annotations

import bz2
import io
import lzma
import zlib
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import fastavro
from fastavro.read import HEADER_SCHEMA

ITEM_BYTES = 64  # what a decoded zero-size item costs at least (a list slot and, for records, a dict)
_HEADER = fastavro.parse_schema(HEADER_SCHEMA)
_STEP = 1 << 20
_PRIMITIVE_SIZES = {"boolean": 1, "float": 4, "double": 8}

Walk = Callable[[BinaryIO], None]


class RecordTooLarge(ValueError):
    """A record (or a container block) that would allocate more than ``MAX_RECORD_BYTES``."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(
            f"{what} past the limit of {limit:,} bytes (MAX_RECORD_BYTES); raise MAX_RECORD_BYTES if it is genuine"
        )


class RecordReader:
    """Reads one record of ``schema`` (parsed) at a time, within ``limit`` bytes for exposed schemas."""

    def __init__(self, schema: Any, limit: int) -> None:
        self.schema, self.limit = schema, limit
        walker = _Walker(schema, limit)
        self._walk = walker.root() if walker.exposed() else None

    @property
    def guarded(self) -> bool:
        return self._walk is not None

    def read(self, stream: BinaryIO) -> Any:
        """The next record; ``RecordTooLarge`` leaves ``stream`` after that record, so reading can go on."""
        if self._walk is None:
            return fastavro.schemaless_reader(stream, self.schema)
        tee = _Tee(stream, self.limit)
        self._walk(tee)
        if tee.over is not None:
            raise RecordTooLarge(tee.over, self.limit)
        return fastavro.schemaless_reader(io.BytesIO(b"".join(tee.pieces)), self.schema)


class _Tee:
    """A stream that keeps what is read from it, up to the limit; past it, it only reads on."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self.stream, self.limit = stream, limit
        self.pieces: list[bytes] = []
        self.size = 0
        self.over: str | None = None  # why the record is too large

    def read(self, size: int) -> bytes:
        self.size += size
        if self.size > self.limit and self.over is None:
            self.too_large(f"record of at least {self.size:,} bytes goes")
        if self.over is None or size <= _STEP:
            data = self.stream.read(size)
            if len(data) < size:
                raise EOFError("the input ends inside a record")
            if self.over is None:
                self.pieces.append(data)
            return data
        while size:  # skip in bounded steps: a declared length may be anything
            data = self.stream.read(min(size, _STEP))
            if not data:
                raise EOFError("the input ends inside a record")
            size -= len(data)
        return b""

    def too_large(self, what: str) -> None:
        self.over = self.over or what
        self.pieces.clear()


def _long(stream: BinaryIO) -> int:
    result = shift = 0
    while True:
        byte = stream.read(1)[0]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result >> 1) ^ -(result & 1)
        shift += 7


class _Walker:
    """Builds, for a parsed schema, a function that skips one record and checks its array counts."""

    def __init__(self, schema: Any, limit: int) -> None:
        self.schema, self.limit = schema, limit
        self.named: dict[str, Any] = dict(schema.get("__named_schemas", {})) if isinstance(schema, dict) else {}
        self._walks: dict[str, Walk] = {}

    def _resolve(self, schema: Any) -> Any:
        return self.named.get(schema, schema) if isinstance(schema, str) else schema

    def zero_size(self, schema: Any, seen: frozenset[str] = frozenset()) -> bool:
        """Whether a value of ``schema`` can encode in zero bytes."""
        name = schema if isinstance(schema, str) and schema in self.named else None
        if name in seen:
            return False
        schema = self._resolve(schema)
        kind = schema if isinstance(schema, str) else schema.get("type") if isinstance(schema, dict) else "union"
        if kind == "null":
            return True
        if kind == "fixed":
            return schema.get("size") == 0
        if kind in ("record", "error"):
            inner = seen | {name or schema.get("name", "")}
            return all(self.zero_size(field["type"], inner) for field in schema.get("fields", []))
        if isinstance(kind, dict | list):  # {"type": {...}} wrapping
            return self.zero_size(kind, seen)
        return False

    def exposed(self) -> bool:
        """Whether the schema has an array of zero-size items anywhere."""
        todo, seen = [self.schema], set()
        while todo:
            schema = todo.pop()
            if isinstance(schema, str):
                if schema in self.named and schema not in seen:
                    seen.add(schema)
                    todo.append(self.named[schema])
            elif isinstance(schema, list):
                todo.extend(schema)
            elif isinstance(schema, dict):
                kind = schema.get("type")
                if kind == "array" and self.zero_size(schema["items"]):
                    return True
                if isinstance(schema.get("name"), str) and kind in ("record", "error", "enum", "fixed"):
                    self.named.setdefault(schema["name"], schema)
                todo.extend(field["type"] for field in schema.get("fields", []))
                todo.extend(schema[key] for key in ("items", "values") if key in schema)
                if isinstance(kind, dict | list):
                    todo.append(kind)
        return False

    def root(self) -> Walk:
        return self.walk(self.schema)

    def walk(self, schema: Any) -> Walk:
        if isinstance(schema, str) and schema in self.named:
            name = schema
            if name not in self._walks:
                self._walks[name] = lambda stream: None  # placeholder while a recursive type is built
                built = self.walk(self.named[name])
                self._walks[name] = built
            return lambda stream: self._walks[name](stream)
        if isinstance(schema, list):
            branches = [self.walk(branch) for branch in schema]

            def union(stream: BinaryIO) -> None:
                index = _long(stream)
                if not 0 <= index < len(branches):
                    raise ValueError(f"union branch {index} does not exist")
                branches[index](stream)

            return union
        kind = schema if isinstance(schema, str) else schema["type"]
        if isinstance(kind, dict | list):
            return self.walk(kind)
        if kind == "null":
            return lambda stream: None
        if kind in _PRIMITIVE_SIZES:
            size = _PRIMITIVE_SIZES[kind]
            return lambda stream: stream.read(size) and None
        if kind in ("int", "long", "enum"):
            return lambda stream: _long(stream) and None
        if kind in ("bytes", "string"):
            return lambda stream: stream.read(_length(stream)) and None
        if kind == "fixed":
            size = schema["size"]
            return lambda stream: stream.read(size) and None
        if kind in ("record", "error"):
            fields = [self.walk(field["type"]) for field in schema.get("fields", [])]

            def record(stream: BinaryIO) -> None:
                for field in fields:
                    field(stream)

            return record
        if kind in ("array", "map"):
            return self._blocks(schema)
        raise ValueError(f"unknown Avro type {kind!r}")

    def _blocks(self, schema: Any) -> Walk:
        limit = self.limit
        if schema["type"] == "array":
            free = self.zero_size(schema["items"])
            item = self.walk(schema["items"])
        else:
            free, key, value = False, self.walk("string"), self.walk(schema["values"])

            def item(stream: BinaryIO) -> None:
                key(stream)
                value(stream)

        def blocks(stream: BinaryIO) -> None:
            total = 0
            while count := _long(stream):
                if count < 0:
                    count = -count
                    _long(stream)  # the block's size in bytes
                total += count
                if free:  # nothing to read: only the count matters
                    if total * ITEM_BYTES > limit:
                        stream.too_large(f"record declares {total:,} array items, which goes")  # type: ignore[attr-defined]
                    continue
                for _ in range(count):
                    item(stream)

        return blocks


def _length(stream: BinaryIO) -> int:
    size = _long(stream)
    if size < 0:
        raise ValueError(f"negative length {size}")
    return size


class Container:
    """An Avro object container file read block by block, never inflating a block past the limit.

    fastavro's own readers inflate blocks without bound and need a seekable stream for block
    offsets; this reads pipes too. ``blocks`` yields each block's record count and data, and checks
    the block's sync marker only after its records were taken, so a damaged end loses no record.
    """

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self.stream, self.limit = stream, limit
        header = fastavro.schemaless_reader(stream, _HEADER)
        meta = header["meta"]
        self.codec = meta.get("avro.codec", b"null").decode()
        if self.codec not in _INFLATERS:
            raise ValueError(f"Avro codec {self.codec!r} is not supported (use one of {', '.join(_INFLATERS)})")
        self.schema_text: bytes = meta["avro.schema"]
        self.sync: bytes = header["sync"]

    def blocks(self) -> Iterator[tuple[int, BinaryIO]]:
        stream = self.stream
        while first := stream.read(1):
            count = _long(_Prefixed(first, stream))
            size = _long(stream)
            if size < 0:
                raise ValueError(f"negative Avro block size {size}")
            data = _read_exactly(stream, size)
            if self.codec != "null":
                data = _INFLATERS[self.codec](data, self.limit)
            yield count, io.BytesIO(data)
            if stream.read(16) != self.sync:
                raise ValueError("Avro block does not end with the file's sync marker: the file is damaged")


class _Prefixed:
    def __init__(self, first: bytes, stream: BinaryIO) -> None:
        self.first, self.stream = first, stream

    def read(self, size: int) -> bytes:
        if self.first:
            data, self.first = self.first, b""
            return data
        return self.stream.read(size)


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    """``size`` bytes, read in bounded steps: a declared size may be anything."""
    pieces, left = [], size
    while left:
        data = stream.read(min(left, _STEP))
        if not data:
            raise EOFError(f"the input ends inside an Avro block of {size:,} bytes")
        pieces.append(data)
        left -= len(data)
    return b"".join(pieces)


def _inflated(decompressor: Any, data: bytes, limit: int) -> bytes:
    block = decompressor.decompress(data, limit + 1)
    if len(block) > limit:
        raise RecordTooLarge("block inflates", limit)
    return block


_INFLATERS: dict[str, Callable[[bytes, int], bytes]] = {
    "null": lambda data, limit: data,
    "deflate": lambda data, limit: _inflated(zlib.decompressobj(-15), data, limit),
    "bzip2": lambda data, limit: _inflated(bz2.BZ2Decompressor(), data, limit),
    "xz": lambda data, limit: _inflated(lzma.LZMADecompressor(), data, limit),
}
