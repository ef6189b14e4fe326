"""The codec interface: read a binary stream and yield ``Chunk``s of lines or records."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any, BinaryIO, Protocol

from mlprep.runtime.outcomes import Chunk, Failure, Stage
from mlprep.settings_defaults import DEFAULTS

CHUNK_BYTES = 1 << 16  # 64 KiB: small enough to stay in cache, large enough to amortise
CHUNK_RECORDS = 500
BOM = b"\xef\xbb\xbf"
AVRO_MAGIC = b"Obj\x01"  # the start of an Avro object container file


class Codec(Protocol):
    """Splits one input into chunks; decode errors that end the input come as ``Chunk.fatal``."""

    name: str

    def chunks(self, stream: BinaryIO, source: str) -> Iterator[Chunk]: ...


def read_some(stream: BinaryIO, size: int = CHUNK_BYTES) -> bytes:
    """At most ``size`` bytes with a single read: what a pipe holds now, without waiting for more."""
    read1 = getattr(stream, "read1", None)
    return read1(size) if read1 is not None else stream.read(size)


def reads(stream: BinaryIO, size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """``read_some`` until the end, without a leading UTF-8 byte-order mark (editors on Windows add one)."""
    head = b""
    while len(head) < len(BOM) and BOM.startswith(head):  # what came so far may still be a mark
        data = read_some(stream, size)
        if not data:
            break
        head += data
    if head.startswith(BOM):
        head = head[len(BOM) :]
    if head:
        yield head
    while data := read_some(stream, size):
        yield data


class _Replay(io.RawIOBase):
    """``head`` (already read from ``stream``), then the rest of ``stream``."""

    def __init__(self, head: bytes, stream: BinaryIO) -> None:
        self.head, self.stream = head, stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.head:
            data, self.head = self.head[: len(buffer)], self.head[len(buffer) :]
        else:
            data = read_some(self.stream, len(buffer))
        buffer[: len(data)] = data
        return len(data)


def peek_at_least(stream: BinaryIO, size: int) -> tuple[bytes, BinaryIO]:
    """The first ``size`` bytes (fewer only at the end) and a stream that still starts with them: a
    buffered pipe may hold fewer than ``size`` bytes at first, and peeking does not wait for more."""
    head = stream.peek(size)[:size] if hasattr(stream, "peek") else b""
    if len(head) >= size:
        return head, stream
    head = b""
    while len(head) < size and (data := read_some(stream, size - len(head))):
        head += data
    return head, io.BufferedReader(_Replay(head, stream))


def tell(stream: BinaryIO) -> int:
    try:
        return stream.tell()
    except (OSError, ValueError):
        return 0


DEFAULT_MAX_RECORD_BYTES: int = DEFAULTS["max_record_bytes"]  # MAX_RECORD_BYTES


def too_large(source: str, unit: str, position: int, size: int, limit: int) -> Chunk:
    """A chunk reporting one record over the size limit (its bytes were not kept)."""
    message = (
        f"record of {size:,} bytes is larger than the limit of {limit:,} bytes (MAX_RECORD_BYTES); "
        "raise MAX_RECORD_BYTES to accept it"
    )
    failure = Failure(source, unit, position, Stage.DECODE, message, None)
    return Chunk(source, unit, position, lines=[], failures=[failure])
