"""Batch JSONL throughput (identity pre_processing) against the naive loop users write and the
floor (orjson parse + dump, nothing else); and --workers 2 against 1 on CPU-heavy preprocessing."""

from __future__ import annotations

import orjson
from common import IDENTITY, WORK, best_time, mlprep, python_snippet, report

RECORDS = 1_000_000
HEAVY_RECORDS = 60_000

NAIVE = """
import json, sys
for line in sys.stdin:
    print(json.dumps(json.loads(line)))
"""
FLOOR = """
import sys, orjson
write = sys.stdout.buffer.write
for line in sys.stdin.buffer:
    write(orjson.dumps(orjson.loads(line)) + b"\\n")
"""
HEAVY = """
import math

def pre_processing(data):  # about 50 microseconds of pure Python per record
    total = 0.0
    for i in range(1, 470):
        total += math.sqrt(i * data["id"] + 1.0)
    return {"id": data["id"], "score": total}
"""


def make_input(path, count):
    with path.open("wb") as handle:
        for i in range(count):
            record = {
                "id": i,
                "name": f"customer-{i}",
                "value": i * 0.25,
                "active": i % 2 == 0,
                "tags": ["a", "b"],
                "address": {"city": "Paris", "zip": "75001"},
            }
            handle.write(orjson.dumps(record) + b"\n")


def main() -> bool:
    source = WORK / "batch.jsonl"
    make_input(source, RECORDS)
    naive = best_time(python_snippet(NAIVE), stdin=source)
    floor = best_time(python_snippet(FLOOR), stdin=source)
    ours = best_time(mlprep("run", "-p", str(IDENTITY), str(source)))
    ok = report(
        f"Batch JSONL, {RECORDS:,} records, identity pre_processing, one process",
        [
            ("floor (orjson loads+dumps per line)", RECORDS / floor),
            ("naive loop (json.loads + print(json.dumps))", RECORDS / naive),
            ("mlprep run", RECORDS / ours),
        ],
        "records/s",
        "floor (orjson loads+dumps per line)",
        {"mlprep run": 0.8},
    )
    print(f"  mlprep run vs naive loop: {naive / ours:.2f}x (target >= 1.8x)")
    ok &= naive / ours >= 1.8

    heavy_source = WORK / "heavy.jsonl"
    make_input(heavy_source, HEAVY_RECORDS)
    heavy = WORK / "heavy.py"
    heavy.write_text(HEAVY)
    one = best_time(mlprep("run", "-p", str(heavy), "--workers", "1", str(heavy_source)), repeat=2)
    two = best_time(mlprep("run", "-p", str(heavy), "--workers", "2", str(heavy_source)), repeat=2)
    ok &= report(
        f"CPU-heavy pre_processing (~50 us/record), {HEAVY_RECORDS:,} records",
        [("--workers 1", HEAVY_RECORDS / one), ("--workers 2", HEAVY_RECORDS / two)],
        "records/s",
        "--workers 1",
        {"--workers 2": 1.6},
    )
    print(f"  per record with one worker: {one / HEAVY_RECORDS * 1e6:.0f} us")
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
