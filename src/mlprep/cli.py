"""``mlprep``: the command line. Sub-commands are thin: the work lives in the modules they call."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from mlprep import __version__
from mlprep.errors import MlprepError
from mlprep.settings import Settings

EPILOG_RUN = """examples:
  echo '{"test": "data"}' | mlprep run
  mlprep run input.jsonl input.json alerts.avro -o out.jsonl
  mlprep run --avro-schema alert.avsc --skip-cutouts stream.bin
  mlprep run big.jsonl --workers 2 --on-error skip --dead-letter bad.jsonl

exit status: 0 when every record went through, 1 when some failed, 2 on a usage or loading error.
"""


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlprep", description="Run the pre_processing code of an MLflow run.")
    parser.add_argument("--version", action="version", version=f"mlprep {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="batch mode: files or stdin (JSONL, JSON, Avro) to JSONL",
        description="Apply pre_processing to every record of the inputs (stdin when none) and write JSONL.",
        epilog=EPILOG_RUN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("files", nargs="*", metavar="FILE", help="input files; '-' or none for stdin")
    _preprocessing_option(run, settings)
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
        type=_positive,
        default=1,
        metavar="N",
        help="run pre_processing in N processes, output order kept (default 1)",
    )
    run.add_argument("-o", "--output", type=Path, metavar="FILE", help="write JSONL here instead of stdout")
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
        help="append each bad record (raw input, place, error) as a JSON line",
    )
    run.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when reading files and stderr is a terminal)",
    )
    run.set_defaults(handler=_run)

    serve = commands.add_parser("serve", help="REST API (FastAPI): /preprocess, /preprocess/batch, /health, /docs")
    _preprocessing_option(serve, settings)
    serve.add_argument("--host", default=settings.api_host, help="env API_HOST (default 0.0.0.0)")
    serve.add_argument("--port", type=int, default=settings.api_port, help="env API_PORT (default 8000)")
    serve.add_argument("--workers", type=_positive, default=settings.api_workers, help="env API_WORKERS (default 1)")
    serve.set_defaults(handler=_serve)
    return parser


def _preprocessing_option(parser: argparse.ArgumentParser, settings: Settings) -> None:
    parser.add_argument(
        "-p",
        "--preprocessing",
        default=settings.preprocessing_dir,
        metavar="PATH",
        help="folder holding preprocessing.py, or a .py file (env PREPROCESSING_DIR, default ./preprocessing)",
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _run(args: argparse.Namespace) -> int:
    from mlprep.batch import BatchOptions, run_batch
    from mlprep.core import Preprocessor

    pre = Preprocessor.load(args.preprocessing, skip_cutouts=args.skip_cutouts)
    options = BatchOptions(
        input_format=args.input_format,
        avro_schema=args.avro_schema,
        workers=args.workers,
        on_error=args.on_error,
        dead_letter=args.dead_letter,
        progress=args.progress,
    )
    if args.output is not None:
        with open(args.output, "wb") as out:
            summary = run_batch(pre, args.files, out, sys.stderr, options)
    else:
        summary = run_batch(pre, args.files, sys.stdout.buffer, sys.stderr, options)
    print(f"mlprep: {summary.line()}", file=sys.stderr)
    return 1 if summary.n_failed else 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mlprep.api.app import create_app
    from mlprep.core import Preprocessor

    settings = Settings()
    os.environ["PREPROCESSING_DIR"] = str(args.preprocessing)
    pre = Preprocessor.load(args.preprocessing, skip_cutouts=settings.skip_cutouts)
    print(f"mlprep: serving {pre.path} on http://{args.host}:{args.port} (docs at /docs)", file=sys.stderr)
    options = {"host": args.host, "port": args.port, "access_log": settings.api_access_log, "log_level": "info"}
    if args.workers > 1:
        uvicorn.run("mlprep.api.app:create_app", factory=True, workers=args.workers, **options)
    else:
        settings.preprocessing_dir = str(args.preprocessing)
        uvicorn.run(create_app(settings, pre), **options)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mlprep`` console script."""
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        print(f"mlprep: error: invalid environment variable: {problems}", file=sys.stderr)
        return 2
    parser = build_parser(settings)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.handler(args)
    except MlprepError as exc:
        print(f"mlprep: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `mlprep run big.jsonl | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
