"""JSON documents: one object, an array of records (streamed, never loaded whole), or several values.

The C scanner of ``json`` parses one element at a time from a sliding text buffer, so memory stays
bounded by the largest record, not the file. Records parsed so far are handed on before any read
that may block, so a slow producer sees output as it writes.
"""

from __future__ import annotations

import codecs as _codecs
import json
from collections.abc import Iterator
from typing import Any, BinaryIO

from mlprep.codecs.base import CHUNK_BYTES, CHUNK_RECORDS, read_some, tell
from mlprep.process import DECODE, Chunk, Failure

_WS = " \t\r\n"
_MORE = object()


class JsonDocumentCodec:
    name = "json"

    def chunks(self, stream: BinaryIO, source: str) -> Iterator[Chunk]:
        window = _TextWindow(stream)
        decoder = json.JSONDecoder()
        records: list[Any] = []
        first = 1
        in_array = expect_comma = False

        def flush(idle: bool) -> Chunk:
            nonlocal records, first
            chunk = Chunk(source, "record", first, records=records, idle=idle, offset=tell(stream))
            first += len(records)
            records = []
            return chunk

        while True:
            char = window.next_char()
            if char is None:  # buffer exhausted: hand on what we have, then read
                if records:
                    yield flush(True)
                if window.fill():
                    continue
                if in_array:
                    yield _fatal(source, first, window, "unexpected end of input inside an array")
                return
            if in_array and char == "]":
                window.pos += 1
                in_array = expect_comma = False
            elif in_array and expect_comma:
                if char != ",":
                    yield flush(True)
                    yield _fatal(source, first, window, f"expected ',' or ']' but found {char!r}")
                    return
                window.pos += 1
                expect_comma = False
            elif not in_array and char == "[":
                window.pos += 1
                in_array = True
            else:
                try:
                    value = window.decode(decoder)
                except json.JSONDecodeError as exc:
                    if records:
                        yield flush(True)
                    yield _fatal(source, first, window, exc.msg, exc.pos)
                    return
                if value is _MORE:
                    if records:
                        yield flush(True)
                    window.fill()
                    continue
                records.append(value)
                expect_comma = in_array
                if len(records) >= CHUNK_RECORDS:
                    yield flush(False)


def _fatal(source: str, position: int, window: _TextWindow, message: str, pos: int | None = None) -> Chunk:
    line, column = window.location(pos)
    failure = Failure(
        source,
        "record",
        position,
        DECODE,
        f"invalid JSON at line {line} column {column}: {message}; the rest of this input is not read",
        window.excerpt(pos),
    )
    return Chunk(source, "record", position, records=[], fatal=failure, idle=True)


class _TextWindow:
    """A text buffer over a byte stream that grows on demand and forgets what was parsed."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._decoder = _codecs.getincrementaldecoder("utf-8-sig")()
        self.text = ""
        self.pos = 0
        self.eof = False
        self._line_base = 1
        self._column_base = 0

    def fill(self) -> bool:
        """Read more input; False at the end."""
        if self.eof:
            return False
        data = read_some(self._stream, CHUNK_BYTES)
        if not data:
            self.eof = True
            self.text += self._decoder.decode(b"", final=True)
            return False
        if self.pos:
            self._forget()
        self.text += self._decoder.decode(data)
        return True

    def _forget(self) -> None:
        done = self.text[: self.pos]
        newlines = done.count("\n")
        if newlines:
            self._line_base += newlines
            self._column_base = self.pos - done.rfind("\n") - 1
        else:
            self._column_base += self.pos
        self.text = self.text[self.pos :]
        self.pos = 0

    def next_char(self) -> str | None:
        """The next non-blank character (not consumed), or None when the buffer is exhausted."""
        text, pos = self.text, self.pos
        while pos < len(text) and text[pos] in _WS:
            pos += 1
        self.pos = pos
        return text[pos] if pos < len(text) else None

    def decode(self, decoder: json.JSONDecoder) -> Any:
        """The value at the cursor, or ``_MORE`` when the buffer may have cut it short."""
        try:
            value, end = decoder.raw_decode(self.text, self.pos)
        except json.JSONDecodeError as exc:
            if not self.eof and (exc.pos >= len(self.text) - 1 or exc.msg.startswith("Unterminated")):
                return _MORE
            raise
        if end >= len(self.text) and not self.eof and isinstance(value, int | float):
            return _MORE  # a number may go on in the next read
        self.pos = end
        return value

    def location(self, pos: int | None) -> tuple[int, int]:
        pos = self.pos if pos is None else pos
        before = self.text[:pos]
        newlines = before.count("\n")
        if newlines:
            return self._line_base + newlines, pos - before.rfind("\n")
        return self._line_base, self._column_base + pos + 1

    def excerpt(self, pos: int | None) -> bytes:
        pos = self.pos if pos is None else pos
        return self.text[max(0, pos - 40) : pos + 40].encode()
