"""Avro container file -> JSONL: mlprep against fastavro+orjson (the floor) and the `avro` package."""

from __future__ import annotations

import fastavro
from common import IDENTITY, WORK, best_time, mlprep, python_snippet, report

RECORDS = 200_000
SCHEMA = {
    "type": "record",
    "name": "Candidate",
    "fields": [
        {"name": "objectId", "type": "string"},
        {"name": "candid", "type": "long"},
        {"name": "jd", "type": "double"},
        {"name": "fid", "type": "int"},
        {"name": "magpsf", "type": "float"},
        {"name": "sigmapsf", "type": "float"},
        {"name": "ra", "type": "double"},
        {"name": "dec", "type": "double"},
        {"name": "isdiffpos", "type": "string"},
        {"name": "ndethist", "type": ["null", "int"], "default": None},
    ],
}
AVRO_PACKAGE = """
import json, sys
from avro.datafile import DataFileReader
from avro.io import DatumReader
write = sys.stdout.write
with DataFileReader(open(sys.argv[1], "rb"), DatumReader()) as reader:
    for record in reader:
        write(json.dumps(record) + "\\n")
"""
FLOOR = """
import sys, fastavro, orjson
write = sys.stdout.buffer.write
with open(sys.argv[1], "rb") as handle:
    for record in fastavro.reader(handle):
        write(orjson.dumps(record) + b"\\n")
"""


def main() -> bool:
    path = WORK / "alerts.avro"
    records = (
        {
            "objectId": f"ZTF21{i:07d}",
            "candid": 10**15 + i,
            "jd": 2459000.5 + i / 1e4,
            "fid": 1 + i % 2,
            "magpsf": 18.0 + (i % 50) / 10,
            "sigmapsf": 0.05,
            "ra": 150.0 + i / 1e5,
            "dec": 2.2,
            "isdiffpos": "t",
            "ndethist": i % 30,
        }
        for i in range(RECORDS)
    )
    with path.open("wb") as handle:
        fastavro.writer(handle, fastavro.parse_schema(SCHEMA), records)
    floor = best_time([*python_snippet(FLOOR), str(path)])
    slow = best_time([*python_snippet(AVRO_PACKAGE), str(path)], repeat=1)
    ours = best_time(mlprep("run", "-p", str(IDENTITY), str(path)))
    return report(
        f"Avro container -> JSONL, {RECORDS:,} records, identity pre_processing",
        [
            ("fastavro + orjson (floor)", RECORDS / floor),
            ("avro package + json", RECORDS / slow),
            ("mlprep run", RECORDS / ours),
        ],
        "records/s",
        "fastavro + orjson (floor)",
        {"mlprep run": 0.7},
    )


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
