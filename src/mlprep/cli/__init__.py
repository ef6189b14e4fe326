"""``mlprep``: the command line, one module per command group; the work lives in the modules they call.

The settings are read once here and passed to every command. When the environment sets none, they
are the defaults: ``DefaultSettings`` then stands for them and batch mode (`mlprep run`) starts without
importing pydantic; the other commands get the validated ``Settings`` (the same values).
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import sys
from typing import TYPE_CHECKING

from mlprep import __version__
from mlprep.cli import dlq, run, serve, stream
from mlprep.cli.options import stdout_to_devnull
from mlprep.errors import MlprepError
from mlprep.redaction import redact, redact_logs
from mlprep.settings_defaults import DefaultSettings, environment_sets_any

if TYPE_CHECKING:
    from mlprep.settings import Settings

LIGHT_COMMANDS = ("run",)  # commands that take DefaultSettings as their settings


def build_parser(settings: Settings | DefaultSettings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlprep", description="Run the pre_processing code of an MLflow run.")
    parser.add_argument("--version", action="version", version=f"mlprep {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in (run, serve, stream, dlq):
        group.register(commands, settings)
    if importlib.util.find_spec("mlprep.build") is not None:  # images hold no build side
        from mlprep.cli import build

        build.register(commands, settings)
    return parser


def _load_settings() -> Settings:
    from mlprep.settings import load_settings

    return load_settings()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mlprep`` console script."""
    redact_logs()
    try:
        settings = _load_settings() if environment_sets_any() else DefaultSettings()
    except MlprepError as exc:
        print(f"mlprep: error: {exc}", file=sys.stderr)
        return 2
    parser = build_parser(settings)  # DefaultSettings has the attributes of Settings
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if isinstance(settings, DefaultSettings) and args.command not in LIGHT_COMMANDS:
        settings = _load_settings()  # the same values, validated: nothing in the environment can fail
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
