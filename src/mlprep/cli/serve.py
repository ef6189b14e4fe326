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
    serve = commands.add_parser(
        "serve",
        help="REST API: /preprocess, /preprocess/batch, /health, /docs; with --model, /predict and /invocations",
    )
    preprocessing_option(serve, settings)
    serve.add_argument("--host", default=settings.api_host, help="env API_HOST (default 0.0.0.0)")
    serve.add_argument("--port", type=int, default=settings.api_port, help="env API_PORT (default 8000)")
    serve.add_argument("--workers", type=positive, default=settings.api_workers, help="env API_WORKERS (default 1)")
    serve.add_argument(
        "--model",
        default=settings.model_uri,
        metavar="MODEL_URI",
        help="also serve this MLflow model after pre_processing: /predict and /invocations "
        "(models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN/PATH or a folder; env MODEL_URI)",
    )
    serve.add_argument(
        "--model-reload-s",
        type=_seconds,
        default=settings.model_reload_s,
        metavar="SECONDS",
        help="check where the model's alias points every SECONDS and swap in a new version (env MODEL_RELOAD_S)",
    )
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from mlprep.rest.app import create_app
    from mlprep.runtime.core import Preprocessor

    log_to_stderr()
    pre = Preprocessor.load(args.preprocessing, skip_cutouts=settings.skip_cutouts)
    model = None
    if args.model:
        from mlprep.runtime.model import ServedModel

        model = ServedModel(args.model, args.model_reload_s)  # a ModelLoadError stops here, exit 2
        served = f" then model {model.info.pinned}"
        settings.model_uri, settings.model_reload_s = args.model, args.model_reload_s
    print(
        f"mlprep: serving {pre.path}{served if model else ''} on http://{args.host}:{args.port} (docs at /docs)",
        file=sys.stderr,
    )
    options = {"host": args.host, "port": args.port, "access_log": settings.api_access_log, "log_level": "info"}
    if args.workers > 1:
        import tempfile

        from mlprep.rest.metrics import MULTIPROCESS_DIR

        # uvicorn spawns the worker processes: they build their settings from the environment, so the
        # folder given with -p goes there, and so does the folder where every process counts its metrics.
        os.environ["MLPREP_PREPROCESSING_DIR"] = str(args.preprocessing)
        factory = "mlprep.rest.app:create_app"
        if model is not None:  # each process loads the model (the version checked above, unless it moved)
            model.stop()
            os.environ["MLPREP_MODEL_URI"] = args.model
            if args.model_reload_s:
                os.environ["MLPREP_MODEL_RELOAD_S"] = str(args.model_reload_s)
            factory = "mlprep.rest.predict:create_app"
        with tempfile.TemporaryDirectory(prefix="mlprep-metrics-") as folder:
            os.environ.setdefault(MULTIPROCESS_DIR, folder)
            uvicorn.run(factory, factory=True, workers=args.workers, **options)
    elif model is not None:
        from mlprep.rest import predict

        settings.preprocessing_dir = str(args.preprocessing)
        uvicorn.run(predict.create_app(settings, pre, model=model), **options)
    else:
        settings.preprocessing_dir = str(args.preprocessing)
        uvicorn.run(create_app(settings, pre), **options)
    return 0


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return value
