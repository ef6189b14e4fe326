"""``mlprep``: the command line, one module per command group; the work lives in the modules they call.

The settings are read once here and passed to every command.
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import sys

from mlprep import __version__
from mlprep.cli import dlq, run, serve, stream
from mlprep.cli.options import stdout_to_devnull
from mlprep.errors import MlprepError
from mlprep.redaction import redact, redact_logs
from mlprep.settings import Settings, load_settings


def build_parser(settings: Settings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlprep", description="Run the pre_processing code of an MLflow run.")
    parser.add_argument("--version", action="version", version=f"mlprep {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in (run, serve, stream, dlq):
        group.register(commands, settings)
    if importlib.util.find_spec("mlprep.build") is not None:  # images hold no build side
        from mlprep.cli import build

        build.register(commands, settings)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mlprep`` console script."""
    redact_logs()
    try:
        settings = load_settings()
    except MlprepError as exc:
        print(f"mlprep: error: {exc}", file=sys.stderr)
        return 2
    parser = build_parser(settings)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return args.handler(args, settings)
    except MlprepError as exc:
        print(f"mlprep: error: {redact(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `mlprep run big.jsonl | head`
        stdout_to_devnull()
        return 0
    except KeyboardInterrupt as exc:
        return 128 + (signal.SIGTERM if isinstance(exc, run.Terminated) else signal.SIGINT)
