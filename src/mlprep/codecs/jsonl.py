"""JSON Lines: one JSON value per line, split in bulk; lines are decoded where they are processed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from mlprep.codecs.base import CHUNK_BYTES, read_some, tell
from mlprep.process import Chunk


class JsonlCodec:
    name = "jsonl"

    def chunks(self, stream: BinaryIO, source: str) -> Iterator[Chunk]:
        pending = b""
        line_no = 1
        while True:
            data = read_some(stream, CHUNK_BYTES)
            if not data:
                break
            idle = len(data) < CHUNK_BYTES
            data = pending + data if pending else data
            cut = data.rfind(b"\n")
            if cut < 0:
                pending = data
                continue
            pending = data[cut + 1 :]
            lines = data[:cut].split(b"\n")
            yield Chunk(source, "line", line_no, lines=lines, idle=idle, offset=tell(stream))
            line_no += len(lines)
        if pending.strip():
            yield Chunk(source, "line", line_no, lines=[pending], idle=True, offset=tell(stream))
