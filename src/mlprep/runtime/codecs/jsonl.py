"""JSON Lines: one JSON value per line, split in bulk; lines are decoded where they are processed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from mlprep.runtime.codecs.base import CHUNK_BYTES, DEFAULT_MAX_RECORD_BYTES, reads, tell, too_large
from mlprep.runtime.outcomes import Chunk


class JsonlCodec:
    name = "jsonl"

    def __init__(self, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES, read_size: int = CHUNK_BYTES) -> None:
        self.max_record_bytes = max_record_bytes
        self.read_size = read_size

    def chunks(self, stream: BinaryIO, source: str) -> Iterator[Chunk]:
        """Whole lines of each read; a line cut by the read waits in ``pieces`` (joined once, so a long
        line costs linear time) and one longer than the limit is reported and dropped as it streams."""
        limit, size = self.max_record_bytes, self.read_size
        pieces: list[bytes] = []  # the start of a line that has not ended yet
        pending = 0  # its length, counted on even when its bytes are dropped
        line_no = 1
        for data in reads(stream, size):
            idle = len(data) < size
            cut = data.rfind(b"\n")
            if cut < 0:
                pending += len(data)
                if pending <= limit:
                    pieces.append(data)
                else:
                    pieces.clear()
                continue
            if pending:
                end = data.find(b"\n")
                if pending + end > limit:
                    yield too_large(source, "line", line_no, pending + end, limit)
                    line_no += 1
                    data, cut = data[end + 1 :], cut - end - 1
                    if cut < 0:  # that was the only line ending in this read
                        pieces, pending = [data], len(data)
                        continue
                else:
                    pieces.append(data)
                    data, cut = b"".join(pieces), cut + pending
                pieces, pending = [], 0
            lines = data[:cut].split(b"\n")
            tail = data[cut + 1 :]
            if tail:
                pieces, pending = [tail], len(tail)
            if cut > limit:  # only when the limit is below the read size
                yield from _within_limit(source, line_no, lines, limit, idle, tell(stream))
            else:
                yield Chunk(source, "line", line_no, lines=lines, idle=idle, offset=tell(stream))
            line_no += len(lines)
        if pending > limit:
            yield too_large(source, "line", line_no, pending, limit)
        elif pending and any(piece.strip() for piece in pieces):
            yield Chunk(source, "line", line_no, lines=[b"".join(pieces)], idle=True, offset=tell(stream))


def _within_limit(source: str, first: int, lines: list[bytes], limit: int, idle: bool, offset: int) -> Iterator[Chunk]:
    """The chunk of ``lines``, cut around each line longer than the limit, which is reported instead."""
    start = 0
    for index, line in enumerate(lines):
        if len(line) > limit:
            if index > start:
                yield Chunk(source, "line", first + start, lines=lines[start:index], offset=offset)
            yield too_large(source, "line", first + index, len(line), limit)
            start = index + 1
    yield Chunk(source, "line", first + start, lines=lines[start:], idle=idle, offset=offset)
