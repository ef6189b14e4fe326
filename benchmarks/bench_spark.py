"""Spark local[2] against `mlprep run --workers 2`, and `mlprep.spark.preprocess` against the plain
`mapInPandas` job a Spark user writes by hand with the same function, in one session.

Not run in CI. `python benchmarks/bench_spark.py [N] [HEAVY_N]` (defaults 1,000,000 and 200,000).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import orjson
from common import PYTHON, WORK, report
from common import mlprep as command

RECORDS = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
HEAVY_RECORDS = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
FILES = 8  # one Spark task per input file
IDENTITY = "def pre_processing(data):\n    return data\n"
HEAVY = """
import math

def pre_processing(data):  # about 50 microseconds of pure Python per record
    total = 0.0
    for i in range(1, 470):
        total += math.sqrt(i * data["id"] + 1.0)
    return {"id": data["id"], "score": total}
"""
INPUT_SCHEMA = "id long, name string, value double, active boolean"


def make_input(folder: Path, count: int) -> list[str]:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    paths = [folder / f"part-{n}.jsonl" for n in range(FILES)]
    handles = [path.open("wb") for path in paths]
    for i in range(count):
        record = {"id": i, "name": f"customer-{i}", "value": i * 0.25, "active": i % 2 == 0}
        handles[i % FILES].write(orjson.dumps(record) + b"\n")
    for handle in handles:
        handle.close()
    return [str(path) for path in paths]


def timed(function) -> float:
    begin = time.perf_counter()
    function()
    return time.perf_counter() - begin


def wall(command: list[str]) -> float:
    import subprocess

    begin = time.perf_counter()
    result = subprocess.run(command, capture_output=True, check=False)
    elapsed = time.perf_counter() - begin
    if result.returncode != 0:
        raise SystemExit(f"benchmark command failed: {command}\n{result.stderr.decode()[-3000:]}")
    return elapsed


def hand_written(spark, folder: Path, code: str, schema: str):
    """The mapInPandas job a Spark user writes with the same function."""
    namespace: dict = {}
    exec(code, namespace)  # the benchmark's own code
    function = namespace["pre_processing"]

    def run(frames):
        import pandas as pd

        for frame in frames:
            yield pd.DataFrame([function(record) for record in frame.to_dict("records")])

    return spark.read.schema(INPUT_SCHEMA).json(str(folder)).mapInPandas(run, schema)


def main() -> bool:
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = PYTHON
    warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
    from pyspark.sql import SparkSession

    import mlprep.spark
    from mlprep.spark.files import SparkRunOptions, run_files

    ok = True
    startup = time.perf_counter()
    spark = SparkSession.builder.master("local[2]").appName("bench").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    startup = time.perf_counter() - startup
    print(f"SparkSession local[2] start: {startup:.1f} s")
    for label, code, count, schema in (
        ("identity", IDENTITY, RECORDS, INPUT_SCHEMA),
        ("CPU-heavy (~50 us/record)", HEAVY, HEAVY_RECORDS, "id long, score double"),
    ):
        folder = WORK / f"spark-{count}"
        paths = make_input(folder, count)
        code_file = WORK / f"spark-{label.split()[0]}.py"
        code_file.write_text(code)
        out = WORK / "spark-out"

        def ours_api(code_file=code_file, folder=folder, schema=schema) -> None:
            frame = spark.read.schema(INPUT_SCHEMA).json(str(folder))
            outputs, _ = mlprep.spark.preprocess(frame, code_file, schema=schema)
            outputs.write.format("noop").mode("overwrite").save()

        def theirs(code=code, folder=folder, schema=schema) -> None:
            hand_written(spark, folder, code, schema).write.format("noop").mode("overwrite").save()

        def ours_files(paths=paths, code_file=code_file, out=out) -> None:
            shutil.rmtree(out, ignore_errors=True)
            run_files(paths, str(code_file), SparkRunOptions(out_dir=str(out)), sys.stderr)

        theirs()  # warm the Python workers
        hand = min(timed(theirs) for _ in range(2))
        api = min(timed(ours_api) for _ in range(2))
        files = min(timed(ours_files) for _ in range(2))
        batch_out = WORK / "spark-batch.jsonl"
        batch = wall(command("run", "-p", str(code_file), "--workers", "2", *paths, "-o", str(batch_out)))
        shutil.rmtree(out, ignore_errors=True)
        cli = wall(
            command("run", "--engine", "spark", "--master", "local[2]", "-p", str(code_file), *paths, "-o", str(out))
        )
        ok &= report(
            f"Spark local[2], {label}, {count:,} JSONL records in {FILES} files",
            [
                ("hand-written mapInPandas (same function)", count / hand),
                ("mlprep.spark.preprocess (DataFrame)", count / api),
                ("mlprep run --engine spark, in session", count / files),
                ("mlprep run --engine spark, with startup", count / cli),
                ("mlprep run --workers 2", count / batch),
            ],
            "records/s",
            "hand-written mapInPandas (same function)",
            {"mlprep.spark.preprocess (DataFrame)": 0.9},
        )
        print(f"  --engine spark (in session) vs --workers 2: {batch / files:.2f}x; with startup: {batch / cli:.2f}x")
        fixed = cli - files  # what a new Spark application costs whatever the size
        per_spark, per_batch = files / count, batch / count
        if per_batch > per_spark:
            print(f"  Spark pays on one machine from ~{fixed / (per_batch - per_spark):,.0f} records")
        else:
            print("  Spark does not pay on one machine at this cost per record (its fixed cost is never won back)")
    spark.stop()
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
