"""``mlprep run --engine spark``: input files read by Spark as binary (one task per file), decoded by
the batch codecs inside the job, outputs written as part files and failures in ``OUT_DIR/_failures``."""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from mlprep.errors import MlprepError, OutputError
from mlprep.spark.executor import Shipped
from mlprep.spark.job import SparkJobError, executor_message, map_files_frame, ship

SHOWN_FAILURES = 20  # failure lines printed on stderr; all are in OUT_DIR/_failures


@dataclass
class SparkRunOptions:
    out_dir: str
    output_format: str = "jsonl"
    input_format: str = "auto"
    skip_cutouts: bool = False
    master: str | None = None
    max_record_bytes: int = 32 * 1024 * 1024


@dataclass
class SparkSummary:
    n_in: int = 0
    n_out: int = 0
    n_failed: int = 0

    def line(self) -> str:
        return f"{self.n_in} in, {self.n_out} out, {self.n_failed} failed"


def session(master: str | None) -> Any:
    """The session on ``master``; else spark-submit's; else ``local[*]``."""
    from pyspark.sql import SparkSession

    if master and master.startswith("local"):  # executors must run this interpreter (it has pyarrow)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    # PySpark 4 warns about pandas 3; these jobs exchange Arrow batches and never convert through pandas.
    warnings.filterwarnings("ignore", "PySpark does not yet fully support pandas", FutureWarning)
    builder = SparkSession.builder.appName("mlprep run")
    if master:
        builder = builder.master(master)
    elif "PYSPARK_GATEWAY_PORT" not in os.environ:  # not launched by spark-submit, which gives the master
        builder = builder.master("local[*]")
    return builder.getOrCreate()


def run_files(sources: list[str], preprocessing: str, options: SparkRunOptions, err: TextIO) -> SparkSummary:
    """Process ``sources`` into ``options.out_dir``; raises MlprepError on a usage or loading error."""
    if not sources or "-" in sources:
        raise OutputError("--engine spark reads files (or folders, or globs Spark understands), not stdin")
    spark = session(options.master)
    _quiet(spark)
    shipped = ship(spark, preprocessing, options.skip_cutouts)
    # One partition per file (binary files are not split, and small ones would otherwise share one task),
    # one file's content per Arrow batch; the session's own values come back afterwards.
    changed = {
        "spark.sql.files.openCostInBytes": spark.conf.get("spark.sql.files.maxPartitionBytes"),
        "spark.sql.execution.arrow.maxRecordsPerBatch": "1",
    }
    saved = {key: spark.conf.get(key) for key in changed}
    for key, value in changed.items():
        spark.conf.set(key, value)
    try:
        try:
            files = spark.read.format("binaryFile").load([_qualified(s) for s in sources]).select("path", "content")
        except Exception as exc:  # AnalysisException: a path that does not exist
            raise MlprepError(f"cannot read the inputs: {_first_line(exc)}") from None
        return _write(spark, files, shipped, options, err)
    finally:
        for key, value in saved.items():
            spark.conf.set(key, value)


def _write(spark: Any, files: Any, shipped: Shipped, options: SparkRunOptions, err: TextIO) -> SparkSummary:
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    schema = "json" if options.output_format == "jsonl" else None
    try:
        mapped = map_files_frame(spark, files, shipped, schema, options.input_format, options.max_record_bytes)
        mapped.frame = mapped.frame.persist(StorageLevel.MEMORY_AND_DISK)  # the code runs once for all three writes
        try:
            outputs = mapped.outputs()
            if options.output_format == "jsonl":
                outputs.write.mode("errorifexists").text(options.out_dir)
            else:
                outputs.write.mode("errorifexists").parquet(options.out_dir)
            failures = mapped.failures()
            fields = ("stage", "error", "raw", "raw_base64")
            line = F.when(
                F.col("unit") == "line", F.to_json(F.struct("source", F.col("position").alias("line"), *fields))
            ).otherwise(F.to_json(F.struct("source", F.col("position").alias("record"), *fields)))
            failures.select(line.alias("value")).write.mode("errorifexists").text(f"{options.out_dir}/_failures")
            summary = SparkSummary(mapped.records_in(), outputs.count(), failures.count())
            for row in failures.orderBy("source", "position").limit(SHOWN_FAILURES).collect():
                err.write(f"mlprep: {row.source}: {row.unit} {row.position}: {row.stage} failed: {row.error}\n")
            if summary.n_failed > SHOWN_FAILURES:
                err.write(f"mlprep: ... {summary.n_failed - SHOWN_FAILURES} more in {options.out_dir}/_failures\n")
            return summary
        finally:
            mapped.frame.unpersist()
    except MlprepError:
        raise
    except Exception as exc:
        message = executor_message(exc)
        if message is not None:
            raise SparkJobError(f"on the Spark executors: {message}") from None
        if "already exists" in str(exc):
            raise OutputError(f"{options.out_dir} already exists: remove it or choose another -o") from None
        raise


def _qualified(source: str) -> str:
    """Local paths as absolute ones (Spark resolves relative paths against its own default filesystem)."""
    if "://" in source or source.startswith(("file:", "hdfs:", "s3a:", "gs:", "abfss:", "dbfs:")):
        return source
    return str(Path(source).absolute())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _quiet(spark: Any) -> None:
    spark.sparkContext.setLogLevel("ERROR")
