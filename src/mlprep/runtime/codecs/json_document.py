"""JSON documents: one object, an array of records (streamed, never loaded whole), or several values.

A small scanner finds where each value ends (brackets and strings, never the grammar inside them)
in a sliding byte buffer; each value is then handed on as bytes and decoded with orjson where it is
processed, like a JSON Lines line. A value is complete only when its end has been seen, so a read
boundary can cut anything (a literal, an escape, a number) without being taken for an error; a
value that is not valid JSON is a decode failure of that record and the next one is read. Memory
stays bounded by the largest record (``MAX_RECORD_BYTES``), and values found so far are handed on
before any read that may block, so a slow producer sees output as it writes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

from mlprep.runtime.codecs.base import CHUNK_BYTES, CHUNK_RECORDS, DEFAULT_MAX_RECORD_BYTES, reads, tell, too_large
from mlprep.runtime.outcomes import Chunk, Failure, Stage

_BLANK = re.compile(rb"[ \t\r\n]*+")
# Inside an array or object: skip to the next bracket, over whole strings; stops at a bracket, at a
# string the buffer has cut (its opening quote) or at the end of the buffer.
_INSIDE = re.compile(rb'(?:[^\[\]{}"]++|"[^"\\]*+(?:\\.[^"\\]*+)*+")*+')
# The rest of a string after its opening quote: stops at the closing quote, at a backslash that ends
# the buffer, or at the end of the buffer.
_STRING = re.compile(rb'[^"\\]*+(?:\\.[^"\\]*+)*+')
# A number or a literal: everything up to a delimiter.
_SCALAR = re.compile(rb'[^ \t\r\n,\[\]{}":]*+')


def _nested(levels: int) -> bytes:
    """A pattern for an array or object nested at most ``levels`` deep, strings skipped whole."""
    string = rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"'
    inner = rb""
    for _ in range(levels):
        content = rb'(?:[^\[\]{}"]++|' + string + (rb"|" + inner if inner else rb"") + rb")*+"
        inner = rb"[\[{]" + content + rb"[\]}]"
    return rb"(?:" + inner + rb"|" + string + rb"|" + _SCALAR.pattern[:-2] + rb"++)"


# An array element seen whole in the buffer, nesting at most 4 deep, with what ends it (',' or ']'),
# so it cannot go on in the next read; anything else takes the general way (``_value``).
_ELEMENT = re.compile(rb"[ \t\r\n]*+(" + _nested(4) + rb")[ \t\r\n]*+(?:,|(?=\]))")
_OPEN, _CLOSE = frozenset(b"[{"), frozenset(b"]}")


class JsonDocumentCodec:
    name = "json"

    def __init__(self, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES, read_size: int = CHUNK_BYTES) -> None:
        self.max_record_bytes = max_record_bytes
        self.read_size = read_size

    def chunks(self, stream: BinaryIO, source: str) -> Iterator[Chunk]:
        return _Scanner(stream, source, self.max_record_bytes, self.read_size).chunks()


class _Scanner:
    """The state of one input: the buffer, where values start and end in it, lines and columns."""

    def __init__(self, stream: BinaryIO, source: str, limit: int, read_size: int) -> None:
        self.stream, self.source, self.limit = stream, source, limit
        self._reads = reads(stream, read_size)
        self.buf = bytearray()
        self.eof = False
        self.truncated = False  # the input ended inside a value
        self.pos = 0  # where the next value (or separator) starts
        self.mark, self.line, self.column = 0, 1, 1  # a buffer index and its line and column
        self.values: list[bytes] = []
        self.starts: list[int] = []  # where each of ``values`` starts in the buffer
        self.places: list[tuple[int, int]] = []  # their lines and columns, once worked out
        self.first = 1  # record number of values[0]

    def chunks(self) -> Iterator[Chunk]:
        in_array = expect_comma = False
        while True:
            self.pos = _BLANK.match(self.buf, self.pos).end()
            if self.pos >= len(self.buf):  # buffer exhausted: hand on what we have, then read
                if self.values:
                    yield self._flush(True)
                if self._fill():
                    continue
                if in_array and not self.truncated:  # else the cut value was reported already
                    yield self._fatal("unexpected end of input inside an array")
                return
            char = self.buf[self.pos]
            if in_array and char == ord("]"):
                self.pos += 1
                in_array = expect_comma = False
            elif in_array and expect_comma:
                if char != ord(","):
                    if self.values:
                        yield self._flush(True)
                    yield self._fatal(f"expected ',' or ']' but found {chr(char)!r}")
                    return
                self.pos += 1
                expect_comma = False
            elif not in_array and char == ord("["):
                self.pos += 1
                in_array = True
            else:
                if char in _CLOSE or char in b",:":
                    if self.values:
                        yield self._flush(True)
                    yield self._fatal(f"unexpected {chr(char)!r}")
                    return
                if in_array and self._elements():
                    expect_comma = self.buf[self.pos - 1] != ord(",")
                else:
                    yield from self._value()
                    expect_comma = in_array
                if len(self.values) >= CHUNK_RECORDS:
                    yield self._flush(False)

    def _elements(self) -> bool:
        """The common case: array elements seen whole in the buffer, taken in a tight loop; False when
        the one at ``pos`` is not (nested deeper, cut by the read, too large: ``_value`` then)."""
        buf, pos, limit = self.buf, self.pos, self.limit
        values, starts = self.values, self.starts
        match, room = _ELEMENT.match, CHUNK_RECORDS - len(values)
        found = 0
        with memoryview(buf) as view:  # one copy per value, not two; released before the buffer moves
            while found < room and (whole := match(buf, pos)) is not None:
                start, end = whole.span(1)
                if end - start > limit:
                    break
                values.append(bytes(view[start:end]))
                starts.append(start)
                found += 1
                pos = whole.end()
                if buf[pos - 1] != 44:  # ','
                    break
        self.pos = pos
        return found > 0

    def _value(self) -> Iterator[Chunk]:
        """Find the end of the value at ``pos``, reading as needed; queue it, or report it too large."""
        start = scan = self.pos
        depth, in_string, dropped = 0, False, 0
        opener = self.buf[start]
        while True:
            buf, end = self.buf, None
            if opener in _OPEN:
                while scan < len(buf):
                    if in_string:
                        scan = _STRING.match(buf, scan).end()
                        if scan < len(buf) and buf[scan] == ord('"'):
                            scan, in_string = scan + 1, False
                            continue
                        break
                    scan = _INSIDE.match(buf, scan).end()
                    if scan >= len(buf):
                        break
                    char = buf[scan]
                    scan += 1
                    if char == ord('"'):
                        in_string = True
                    elif char in _OPEN:
                        depth += 1
                    else:
                        depth -= 1
                        if depth == 0:
                            end = scan
                            break
            elif opener == ord('"'):
                scan = _STRING.match(buf, max(scan, start + 1)).end()
                if scan < len(buf) and buf[scan] == ord('"'):
                    end = scan + 1
            else:
                scan = _SCALAR.match(buf, scan).end()
                if scan < len(buf):
                    end = scan
            if end is None and self.eof:
                end = len(buf)  # cut short by the end of the input: orjson says what is missing
                self.truncated = True
            if end is not None:
                self.pos = end
                if dropped or end - start > self.limit:
                    self._place(end)
                    yield from self._too_large(dropped + end - start)
                else:
                    self.values.append(bytes(buf[start:end]))
                    self.starts.append(start)
                return
            if dropped or scan - start > self.limit:  # too large: scan on to its end without keeping it
                self._place(scan)
                dropped += scan - start
                del buf[start:scan]
                scan = self.mark = start
            if self.values:
                yield self._flush(True)
            self._fill()  # forgets everything before ``pos``, which is ``start``
            start, scan = 0, scan - start

    def _too_large(self, size: int) -> Iterator[Chunk]:
        if self.values:
            yield self._flush(False)
        yield too_large(self.source, "record", self.first, size, self.limit)
        self.first += 1

    def _place(self, index: int) -> tuple[int, int]:
        """Line and column of buffer ``index`` (at or after every one asked for before)."""
        self._resolve()
        return self._step(index)

    def _resolve(self) -> None:
        """The places of the values queued so far; all at once when no line ends among them."""
        starts = self.starts
        if not starts:
            return
        if self.buf.count(b"\n", self.mark, starts[-1]):
            self.places.extend([self._step(start) for start in starts])
        else:
            line, base = self.line, self.column - self.mark
            self.places.extend([(line, base + start) for start in starts])
            self.column, self.mark = base + starts[-1], starts[-1]
        starts.clear()

    def _step(self, index: int) -> tuple[int, int]:
        buf, mark = self.buf, self.mark
        newlines = buf.count(b"\n", mark, index)
        if newlines:
            self.line += newlines
            self.column = index - buf.rfind(b"\n", mark, index)
        else:
            self.column += index - mark
        self.mark = index
        return self.line, self.column

    def _fill(self) -> bool:
        """Read more input, first forgetting what was handed on; False at the end."""
        self._place(self.pos)
        del self.buf[: self.pos]
        self.mark -= self.pos
        self.pos = 0
        data = next(self._reads, b"")
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _flush(self, idle: bool) -> Chunk:
        self._resolve()
        chunk = Chunk(
            self.source,
            "record",
            self.first,
            lines=self.values,
            places=self.places,
            idle=idle,
            offset=tell(self.stream),
        )
        self.first += len(self.values)
        self.values, self.places = [], []
        return chunk

    def _fatal(self, message: str) -> Chunk:
        line, column = self._place(self.pos)
        excerpt = bytes(self.buf[max(0, self.pos - 40) : self.pos + 40])
        text = f"invalid JSON at line {line} column {column}: {message}; the rest of this input is not read"
        failure = Failure(self.source, "record", self.first, Stage.DECODE, text, excerpt)
        return Chunk(self.source, "record", self.first, records=[], fatal=failure, idle=True)
