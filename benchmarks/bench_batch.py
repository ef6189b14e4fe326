"""Batch JSONL throughput, `mlprep run` start to end with identity pre_processing and -o FILE, against the
chunked floor (floor_batch.py: the same work by hand, orjson and nothing else) and the per-line orjson
loop, in alternating rounds of one session; peak RSS of each. Then --workers 2 against 1 on CPU-heavy
preprocessing."""

from __future__ import annotations

import filecmp
from pathlib import Path

import orjson
from common import IDENTITY, PYTHON, WORK, alternate, mlprep, python_snippet, report_rounds

RECORDS = 300_000
ROUNDS = 7
HEAVY_RECORDS = 40_000
HEAVY_ROUNDS = 3
FLOOR = Path(__file__).with_name("floor_batch.py")

PER_LINE = """
import sys, orjson
def pre_processing(data):
    return data
write = sys.stdout.buffer.write
for line in sys.stdin.buffer:
    write(orjson.dumps(pre_processing(orjson.loads(line))) + b"\\n")
"""
HEAVY = """
import math

def pre_processing(data):  # about 50 microseconds of pure Python per record
    total = 0.0
    for i in range(1, 470):
        total += math.sqrt(i * data["id"] + 1.0)
    return {"id": data["id"], "score": total}
"""


def make_input(path: Path, count: int) -> None:
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
    source, large, empty = WORK / "batch.jsonl", WORK / "batch-x3.jsonl", WORK / "empty.jsonl"
    make_input(source, RECORDS)
    make_input(large, 3 * RECORDS)
    empty.write_bytes(b"")
    out = {name: WORK / f"out-{name}.jsonl" for name in ("floor", "per-line", "mlprep", "mlprep-x3")}
    ours = "mlprep run -o FILE"
    runs = alternate(
        {
            "chunked floor (floor_batch.py)": ([PYTHON, str(FLOOR)], source, out["floor"]),
            "per-line orjson loop": (python_snippet(PER_LINE), source, out["per-line"]),
            ours: (mlprep("run", "-p", str(IDENTITY), str(source), "-o", str(out["mlprep"])), None, None),
            "3x records": (mlprep("run", "-p", str(IDENTITY), str(large), "-o", str(out["mlprep-x3"])), None, None),
            "floor, empty input": ([PYTHON, str(FLOOR)], empty, None),
            "mlprep run, empty input": (mlprep("run", "-p", str(IDENTITY), str(empty)), None, None),
        },
        ROUNDS,
    )
    if not filecmp.cmp(out["floor"], out["mlprep"], shallow=False):
        raise SystemExit("mlprep run and the floor wrote different outputs")
    main_runs = {name: runs[name] for name in list(runs)[:3]}
    ratios = report_rounds(
        f"Batch JSONL to a file, {RECORDS:,} records, identity pre_processing, one process",
        main_runs,
        RECORDS,
        "chunked floor (floor_batch.py)",
        {ours: 0.8},
    )
    ok = ratios[ours] >= 0.8
    print(f"  {ours} vs the per-line orjson loop: {ratios[ours] / ratios['per-line orjson loop']:.2f}x")
    start = {name: min(run.seconds for run in runs[name]) for name in ("floor, empty input", "mlprep run, empty input")}
    print(
        f"  start-up (empty input, best): floor {start['floor, empty input']:.3f} s, mlprep run "
        f"{start['mlprep run, empty input']:.3f} s"
    )
    rss = {
        name: max(run.peak_rss for run in runs[name]) / 2**20
        for name in (ours, "3x records", "mlprep run, empty input")
    }
    print(
        f"  peak RSS of mlprep run: {rss['mlprep run, empty input']:.1f} MB on an empty input, {rss[ours]:.1f} MB "
        f"on {RECORDS:,} records, {rss['3x records']:.1f} MB on {3 * RECORDS:,}: bounded by the chunk, not the input"
    )

    heavy_source, heavy = WORK / "heavy.jsonl", WORK / "heavy.py"
    make_input(heavy_source, HEAVY_RECORDS)
    heavy.write_text(HEAVY)
    heavy_runs = alternate(
        {
            f"--workers {n}": (mlprep("run", "-p", str(heavy), "--workers", str(n), str(heavy_source)), None, None)
            for n in (1, 2)
        },
        HEAVY_ROUNDS,
    )
    ratios = report_rounds(
        f"CPU-heavy pre_processing (~50 us/record), {HEAVY_RECORDS:,} records",
        heavy_runs,
        HEAVY_RECORDS,
        "--workers 1",
        {"--workers 2": 1.6},
    )
    ok &= ratios["--workers 2"] >= 1.6
    one = min(run.seconds for run in heavy_runs["--workers 1"])
    print(f"  per record with one worker: {one / HEAVY_RECORDS * 1e6:.0f} us")
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
