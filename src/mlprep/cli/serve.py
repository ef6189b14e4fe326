"""``mlprep serve``: the REST API."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from mlprep.cli.options import log_to_stderr, positive, preprocessing_option

if TYPE_CHECKING:
    from mlprep.settings import Settings


def register(commands: argparse._SubParsersAction, settings: Settings) -> None:
    serve = commands.add_parser("serve", help="REST API: /preprocess, /preprocess/batch, /health, /docs")
    preprocessing_option(serve, settings)
    serve.add_argument("--host", default=settings.api_host, help="env API_HOST (default 0.0.0.0)")
    serve.add_argument("--port", type=int, default=settings.api_port, help="env API_PORT (default 8000)")
    serve.add_argument("--workers", type=positive, default=settings.api_workers, help="env API_WORKERS (default 1)")
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from mlprep.rest.app import create_app
    from mlprep.runtime.core import Preprocessor

    log_to_stderr()
    pre = Preprocessor.load(args.preprocessing, skip_cutouts=settings.skip_cutouts)
    print(f"mlprep: serving {pre.path} on http://{args.host}:{args.port} (docs at /docs)", file=sys.stderr)
    options = {"host": args.host, "port": args.port, "access_log": settings.api_access_log, "log_level": "info"}
    if args.workers > 1:
        import tempfile

        from mlprep.rest.metrics import MULTIPROCESS_DIR

        # uvicorn spawns the worker processes: they build their settings from the environment, so the
        # folder given with -p goes there, and so does the folder where every process counts its metrics.
        os.environ["MLPREP_PREPROCESSING_DIR"] = str(args.preprocessing)
        with tempfile.TemporaryDirectory(prefix="mlprep-metrics-") as folder:
            os.environ.setdefault(MULTIPROCESS_DIR, folder)
            uvicorn.run("mlprep.rest.app:create_app", factory=True, workers=args.workers, **options)
    else:
        settings.preprocessing_dir = str(args.preprocessing)
        uvicorn.run(create_app(settings, pre), **options)
    return 0
