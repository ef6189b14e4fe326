"""The chunked floor of batch mode, written by hand: what a JSONL-to-JSONL pass costs in Python with
orjson and nothing else. stdin to stdout, like ``mlprep run`` with identity ``pre_processing``.

Read 64 KiB at a time, split the whole lines, decode each with orjson, call the function, encode each,
write the chunk's lines in one piece. No error handling: every line must be a JSON value.
"""

import sys

import orjson


def pre_processing(data):
    return data


def main() -> None:
    read, write = sys.stdin.buffer.read, sys.stdout.buffer.write
    loads, dumps = orjson.loads, orjson.dumps
    tail = b""
    while data := read(1 << 16):
        data = tail + data
        cut = data.rfind(b"\n") + 1
        tail = data[cut:]
        lines = data[:cut].split(b"\n")
        lines.pop()  # what follows the last newline: nothing, or the start of a line still coming
        # ``out`` lives until the next chunk's replaces it: freed at once, its objects would empty
        # CPython's allocator arenas, unmapped and mapped again every chunk (twice the CPU time here).
        out = [dumps(pre_processing(loads(line))) for line in lines]
        if out:
            write(b"\n".join(out) + b"\n")
    if tail.strip():
        write(dumps(pre_processing(loads(tail))) + b"\n")


if __name__ == "__main__":
    main()
