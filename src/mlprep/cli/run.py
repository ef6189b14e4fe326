"""``mlprep run``: batch mode, files or stdin (JSONL, JSON, Avro) to JSONL."""

from __future__ import annotations

import argparse
import importlib.util
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mlprep.cli.options import positive, preprocessing_option, stdout_to_devnull

if TYPE_CHECKING:
    from mlprep.settings import Settings

EPILOG_RUN = """examples:
  echo '{"test": "data"}' | mlprep run
  mlprep run input.jsonl input.json alerts.avro -o out.jsonl
  mlprep run --avro-schema alert.avsc --skip-cutouts stream.bin
  mlprep run big.jsonl --workers 2 --on-error skip --dead-letter bad.jsonl
  mlprep run --engine spark --master 'local[2]' part-*.jsonl -o out/ --output-format parquet

-o FILE appears when the run ends (written to a temporary file beside it, then renamed): a run
killed or interrupted never leaves a half-written FILE. FILE must not be one of the inputs.

--engine spark reads files with Spark (one task per file), writes part files to the -o folder and
every bad record to OUT_DIR/_failures (it always goes on past bad records).

exit status: 0 when every record went through, 1 when some failed or the run stopped early (a worker
process died), 2 on a usage or loading error, 130 on Ctrl-C, 143 on SIGTERM.
"""


def register(commands: argparse._SubParsersAction, settings: Settings) -> None:
    run = commands.add_parser(
        "run",
        help="batch mode: files or stdin (JSONL, JSON, Avro) to JSONL",
        description="Apply pre_processing to every record of the inputs (stdin when none) and write JSONL.",
        epilog=EPILOG_RUN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("files", nargs="*", metavar="FILE", help="input files; '-' or none for stdin")
    preprocessing_option(run, settings)
    run.add_argument(
        "--input-format",
        choices=("auto", "jsonl", "json", "avro"),
        default="auto",
        help="input format (default: detected from magic bytes, extension, content)",
    )
    run.add_argument(
        "--avro-schema",
        default=settings.avro_schema_path,
        metavar="PATH",
        help="schema (.avsc) of schemaless Avro input (env AVRO_SCHEMA_PATH)",
    )
    run.add_argument(
        "--skip-cutouts",
        action="store_true",
        default=settings.skip_cutouts,
        help="drop cutoutScience/Template/Difference before pre_processing (env SKIP_CUTOUTS)",
    )
    run.add_argument(
        "--workers",
        type=positive,
        default=1,
        metavar="N",
        help="run pre_processing in N processes, output order kept (default 1)",
    )
    run.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="write JSONL here instead of stdout (atomically: it appears when the run ends)",
    )
    run.add_argument(
        "--on-error",
        choices=("fail", "skip"),
        default="fail",
        help="fail: stop at the first bad record (default); skip: report it and go on",
    )
    run.add_argument(
        "--dead-letter",
        type=Path,
        metavar="FILE",
        help="append each bad record (raw input, place, error) as a JSON line, as soon as it is found",
    )
    run.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when reading files and stderr is a terminal)",
    )
    run.add_argument(
        "--engine",
        choices=("batch", "spark"),
        default="batch",
        help="batch: this process (default); spark: an Apache Spark job, -o is then an output folder",
    )
    run.add_argument(
        "--master",
        default=settings.spark_master,
        metavar="URL",
        help="Spark master of --engine spark (env SPARK_MASTER; default spark-submit's, else local[*])",
    )
    run.add_argument(
        "--output-format",
        choices=("jsonl", "parquet"),
        default="jsonl",
        help="format of the part files of --engine spark (default jsonl)",
    )
    run.set_defaults(handler=_run)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that a batch run cleans up (temporary output, workers)."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.engine == "spark":
        return _run_spark(args, settings)
    from mlprep.batch.chunks import collect_less_often
    from mlprep.batch.run import BatchOptions, OutputFile, refuse_overlaps, run_batch
    from mlprep.runtime.core import Preprocessor

    refuse_overlaps(args.files, args.output, args.dead_letter)
    pre = Preprocessor.load(args.preprocessing, skip_cutouts=args.skip_cutouts)
    collect_less_often()
    options = BatchOptions(
        input_format=args.input_format,
        avro_schema=args.avro_schema,
        workers=args.workers,
        on_error=args.on_error,
        dead_letter=args.dead_letter,
        progress=args.progress,
        max_record_bytes=settings.max_record_bytes,
    )
    where = ""
    signal.signal(signal.SIGTERM, _terminate)
    if args.output is not None:
        # The file appears when the run ends (whatever its status), holding what the summary counts as out.
        output = OutputFile(args.output)
        try:
            summary = run_batch(pre, args.files, output.stream, sys.stderr, options)
        except BaseException:
            output.discard()
            raise
        if not summary.output_complete:
            output.discard()
        else:
            try:
                output.commit()
            except OSError as exc:
                summary.error = f"cannot write the output {args.output}: {exc.strerror or exc}"
    elif settings.kafka_enabled and not settings.input_topic:  # the original "Mode Kafka"
        from mlprep.kafka.sink import KafkaLineSink, output_topic

        sink = KafkaLineSink(settings, output_topic(settings, pre.loaded.metadata))
        summary = run_batch(pre, args.files, sink, sys.stderr, options)  # type: ignore[arg-type]
        where = f" (to Kafka topic {sink.topic})"
    else:
        summary = run_batch(pre, args.files, sys.stdout.buffer, sys.stderr, options)
        if not summary.output_complete:  # drop what stdout still buffers: writing it failed already
            stdout_to_devnull()
    if summary.error is not None:
        print(f"mlprep: error: {summary.error}", file=sys.stderr)
    print(f"mlprep: {summary.line()}{where}", file=sys.stderr)
    return 1 if summary.n_failed or summary.error is not None else 0


def _run_spark(args: argparse.Namespace, settings: Settings) -> int:
    from mlprep.errors import OutputError

    if args.output is None:
        raise OutputError("--engine spark writes part files: give the output folder with -o OUT_DIR")
    refused = [
        name for name, given in (("--avro-schema", args.avro_schema), ("--dead-letter", args.dead_letter)) if given
    ]
    if args.workers != 1:
        refused.append("--workers (Spark's executors and cores set the parallelism)")
    if refused:
        raise OutputError(f"--engine spark does not take {', '.join(refused)}; failures go to OUT_DIR/_failures")
    if importlib.util.find_spec("pyspark") is None or importlib.util.find_spec("pyarrow") is None:
        raise OutputError("--engine spark needs the spark extra: pip install 'mlflow-preprocessing-runner[spark]'")
    from mlprep.spark.files import SparkRunOptions, run_files

    options = SparkRunOptions(
        out_dir=str(args.output),
        output_format=args.output_format,
        input_format=args.input_format,
        skip_cutouts=args.skip_cutouts,
        master=args.master,
        max_record_bytes=settings.max_record_bytes,
    )
    summary = run_files(args.files, args.preprocessing, options, sys.stderr)
    print(f"mlprep: {summary.line()}", file=sys.stderr)
    return 1 if summary.n_failed else 0
