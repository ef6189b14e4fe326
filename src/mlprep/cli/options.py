"""Options and helpers shared by the command groups."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlprep.settings import Settings


def preprocessing_option(parser: argparse.ArgumentParser, settings: Settings) -> None:
    parser.add_argument(
        "-p",
        "--preprocessing",
        default=settings.preprocessing_dir,
        metavar="PATH",
        help="folder holding preprocessing.py, or a .py file (env PREPROCESSING_DIR, default ./preprocessing)",
    )


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def log_to_stderr() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def stdout_to_devnull() -> None:
    """Point stdout at /dev/null so that the flush at exit cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
