"""``mlprep``: the command line. Sub-commands are thin: the work lives in the modules they call."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from mlprep import __version__
from mlprep.errors import MlprepError
from mlprep.redaction import redact, redact_logs
from mlprep.settings import Settings, load_settings

EPILOG_RUN = """examples:
  echo '{"test": "data"}' | mlprep run
  mlprep run input.jsonl input.json alerts.avro -o out.jsonl
  mlprep run --avro-schema alert.avsc --skip-cutouts stream.bin
  mlprep run big.jsonl --workers 2 --on-error skip --dead-letter bad.jsonl

-o FILE appears when the run ends (written to a temporary file beside it, then renamed): a run
killed or interrupted never leaves a half-written FILE. FILE must not be one of the inputs.

exit status: 0 when every record went through, 1 when some failed or the run stopped early (a worker
process died), 2 on a usage or loading error, 130 on Ctrl-C, 143 on SIGTERM.
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
    run.set_defaults(handler=_run)

    serve = commands.add_parser("serve", help="REST API (FastAPI): /preprocess, /preprocess/batch, /health, /docs")
    _preprocessing_option(serve, settings)
    serve.add_argument("--host", default=settings.api_host, help="env API_HOST (default 0.0.0.0)")
    serve.add_argument("--port", type=int, default=settings.api_port, help="env API_PORT (default 8000)")
    serve.add_argument("--workers", type=_positive, default=settings.api_workers, help="env API_WORKERS (default 1)")
    serve.set_defaults(handler=_serve)

    fetch = commands.add_parser(
        "fetch",
        help="download a run's preprocessing code from MLflow",
        description="Download the preprocessing file of an MLflow run, every Python file of its folder "
        "(and sub-packages) and requirements.txt (beside it, else at the artifact root).",
        epilog="examples:\n  mlprep fetch e6c1131f4673449aa688ed1ffc3abbbe preprocessing/\n"
        "  mlprep fetch e6c1131f4673449aa688ed1ffc3abbbe /tmp/code --preprocessing-path code/preprocessing.py\n\n"
        "The tracking server is MLFLOW_TRACKING_URI (else MLflow's local default); credentials come from\n"
        "MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD / MLFLOW_TRACKING_TOKEN and are never printed.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fetch.add_argument("run_id", metavar="RUN_ID")
    fetch.add_argument("dest", metavar="DEST", type=Path, help="folder to write the code into")
    fetch.add_argument(
        "--preprocessing-path",
        default="preprocessing.py",
        metavar="PATH",
        help="the preprocessing file among the run's artifacts (default preprocessing.py)",
    )
    fetch.set_defaults(handler=_fetch)

    build = commands.add_parser(
        "build",
        help="build the preprocessing Docker image of an MLflow run",
        description="Fetch the preprocessing of RUN_ID from MLflow and build a Docker image running it "
        "(batch, REST API, Kafka). The image name 'auto' is {type}-{model_name}-{version} from the run's tags.",
        epilog=BUILD_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.add_argument("run_id", metavar="RUN_ID")
    build.add_argument(
        "image_name", metavar="IMAGE_NAME", nargs="?", default="auto", help="image name, or 'auto' (default)"
    )
    build.add_argument("--tag", default="latest", help="image tag (default latest)")
    build.add_argument(
        "--preprocessing-path",
        default="preprocessing.py",
        metavar="PATH",
        help="the preprocessing file among the run's artifacts, e.g. code/preprocessing.py",
    )
    build.add_argument(
        "--dockerfile", type=Path, metavar="PATH", help="a Dockerfile of your own (default: the one mlprep ships)"
    )
    build.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    _image_options(build, settings)
    build.set_defaults(handler=_build)

    model = commands.add_parser(
        "build-model",
        help="build a Docker image serving an MLflow model's /invocations on port 8080",
        epilog="examples:\n  mlprep build-model models:/model/1 model-model-1\n"
        "  mlprep build-model models:/churn@champion --base-image mlprep-base:3.11-bookworm",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    model.add_argument(
        "model_source", metavar="MODEL_SOURCE", help="models:/NAME/VERSION, models:/NAME@ALIAS, runs:/ID/PATH"
    )
    model.add_argument("image_name", metavar="IMAGE_NAME", nargs="?", help="default model-{name}-{version}")
    model.add_argument("--tag", default="latest", help="image tag (default latest)")
    _image_options(model, settings)
    model.set_defaults(handler=_build_model)

    base = commands.add_parser(
        "base-image",
        help="build a Python base image without any registry (debootstrap + docker import)",
        description="For air-gapped hosts: debootstrap a Debian release with python3, copy this host's CA "
        "bundle in, and docker import it. Reused when the tag exists (--force rebuilds). Needs root.",
    )
    base.add_argument("--python-version", default="3.11", help="3.11 (bookworm, default) or 3.13 (trixie)")
    base.add_argument("--tag", help="image tag (default mlprep-base:<version>-<release>)")
    base.add_argument("--mirror", help="Debian mirror URL (default: debootstrap's)")
    base.add_argument("--force", action="store_true", help="rebuild even when the tag exists")
    base.set_defaults(handler=_base_image)

    build_api = commands.add_parser(
        "build-api",
        help="the build API: builds on request and on MLflow webhooks, with a queue that survives restarts",
        description="Serve the build API (Swagger UI at /docs). Settings: BUILD_API_HOST, BUILD_API_PORT, "
        "BUILD_API_DATABASE_URL, BUILD_API_TOKEN, MAX_CONCURRENT_BUILDS, MLFLOW_WEBHOOK_SECRET, "
        "WEBHOOK_TOLERANCE_SECONDS, MLFLOW_TRACKING_URI, MLPREP_BASE_IMAGE.",
    )
    build_api.add_argument("--host", default=settings.build_api_host, help="env BUILD_API_HOST (default 127.0.0.1)")
    build_api.add_argument("--port", type=int, default=settings.build_api_port, help="env BUILD_API_PORT (8000)")
    build_api.set_defaults(handler=_build_api)

    kafka = commands.add_parser(
        "kafka",
        help="stream processor: INPUT_TOPIC -> pre_processing -> OUTPUT_TOPIC, with the REST API",
        description="Consume INPUT_TOPIC (INPUT_FORMAT avro|json), apply pre_processing, produce to OUTPUT_TOPIC "
        "(OUTPUT_FORMAT json|avro); bad messages go to DEAD_LETTER_TOPIC (default <INPUT_TOPIC>-dlq). The REST API "
        "runs in the same process; /health reports the consumer's state and lag. Settings come from the "
        "environment (see README).",
    )
    _preprocessing_option(kafka, settings)
    kafka.add_argument("--host", default=settings.api_host, help="REST API host (env API_HOST)")
    kafka.add_argument("--port", type=int, default=settings.api_port, help="REST API port (env API_PORT)")
    kafka.set_defaults(handler=_kafka)

    bridge = commands.add_parser(
        "bridge",
        help="Kafka bridge: INPUT_TOPIC -> a model server's /invocations (in batches) -> OUTPUT_TOPIC",
        description="Settings from the environment: KAFKA_BOOTSTRAP_SERVERS, INPUT_TOPIC, OUTPUT_TOPIC, API_URL, "
        "API_ENDPOINT, INPUT_FORMAT, OUTPUT_FORMAT, CONSUMER_GROUP_ID, AUTO_OFFSET_RESET, BATCH_SIZE, "
        "BATCH_TIMEOUT_MS, BRIDGE_PAYLOAD_FORMAT, PASSTHROUGH_FIELDS, BRIDGE_MAX_RETRIES.",
    )
    bridge.set_defaults(handler=_bridge)

    broker = commands.add_parser("kafka-broker", help="the embedded Kafka broker (tansu, memory storage)")
    broker.add_argument("--host", default="127.0.0.1")
    broker.add_argument("--port", type=int, default=29092)
    broker.set_defaults(handler=_kafka_broker)

    dump = commands.add_parser("topic-dump", help="print a topic's messages, oldest first (values, one a line)")
    dump.add_argument("topic", metavar="TOPIC")
    dump.add_argument("--keys", action="store_true", help="print KEY<TAB>VALUE")
    dump.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the topic (default 10)")
    dump.set_defaults(handler=_topic_dump)
    return parser


BUILD_EPILOG = """examples:
  mlprep build e6c1131f4673449aa688ed1ffc3abbbe auto
  mlprep build e6c1131f4673449aa688ed1ffc3abbbe preprocessing-model-v1 --tag v1.0.0
  mlprep build e6c1131f4673449aa688ed1ffc3abbbe auto --preprocessing-path code/preprocessing.py
  mlprep build e6c1131f4673449aa688ed1ffc3abbbe auto --dockerfile docker/custom.Dockerfile
  mlprep build e6c1131f4673449aa688ed1ffc3abbbe auto --python-version 3.11
  mlprep build e6c1131f4673449aa688ed1ffc3abbbe auto --base-image mlprep-base:3.11-bookworm

then:
  echo '{"test": "data"}' | docker run -i preprocessing-model-v1:latest
  docker run -d -p 8000:8000 preprocessing-model-v1:latest
"""


def _image_options(parser: argparse.ArgumentParser, settings: Settings) -> None:
    parser.add_argument("--python-version", default="3.11", help="Python of the image (default 3.11)")
    parser.add_argument(
        "--base-image",
        default=settings.mlprep_base_image,
        metavar="IMAGE",
        help="FROM image (env MLPREP_BASE_IMAGE; default python:<version>-slim); "
        "see `mlprep base-image` for hosts without a registry",
    )


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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that a batch run cleans up (temporary output, workers)."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _run(args: argparse.Namespace) -> int:
    from mlprep.batch import BatchOptions, OutputFile, refuse_overlaps, run_batch
    from mlprep.core import Preprocessor

    refuse_overlaps(args.files, args.output, args.dead_letter)
    pre = Preprocessor.load(args.preprocessing, skip_cutouts=args.skip_cutouts)
    options = BatchOptions(
        input_format=args.input_format,
        avro_schema=args.avro_schema,
        workers=args.workers,
        on_error=args.on_error,
        dead_letter=args.dead_letter,
        progress=args.progress,
    )
    settings = Settings()
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
            _stdout_to_devnull()
    if summary.error is not None:
        print(f"mlprep: error: {summary.error}", file=sys.stderr)
    print(f"mlprep: {summary.line()}{where}", file=sys.stderr)
    return 1 if summary.n_failed or summary.error is not None else 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from mlprep.api.app import create_app
    from mlprep.core import Preprocessor

    _log_to_stderr()
    settings = Settings()
    os.environ["PREPROCESSING_DIR"] = str(args.preprocessing)
    pre = Preprocessor.load(args.preprocessing, skip_cutouts=settings.skip_cutouts)
    print(f"mlprep: serving {pre.path} on http://{args.host}:{args.port} (docs at /docs)", file=sys.stderr)
    options = {"host": args.host, "port": args.port, "access_log": settings.api_access_log, "log_level": "info"}
    if args.workers > 1:
        import tempfile

        from mlprep.api.metrics import MULTIPROCESS_DIR

        # The worker processes count into files of one folder; /metrics adds them up.
        with tempfile.TemporaryDirectory(prefix="mlprep-metrics-") as folder:
            os.environ.setdefault(MULTIPROCESS_DIR, folder)
            uvicorn.run("mlprep.api.app:create_app", factory=True, workers=args.workers, **options)
    else:
        settings.preprocessing_dir = str(args.preprocessing)
        uvicorn.run(create_app(settings, pre), **options)
    return 0


def _kafka(args: argparse.Namespace) -> int:
    from mlprep.core import Preprocessor
    from mlprep.kafka.processor import serve_with_processor

    _log_to_stderr()
    settings = Settings()
    pre = Preprocessor.load(args.preprocessing, skip_cutouts=settings.skip_cutouts)
    return serve_with_processor(settings, pre, args.host, args.port)


def _bridge(args: argparse.Namespace) -> int:
    from mlprep.kafka.bridge import run_bridge

    _log_to_stderr()
    return run_bridge(Settings())


def _kafka_broker(args: argparse.Namespace) -> int:
    from mlprep.kafka.broker import exec_broker

    print(f"mlprep: Kafka broker (tansu, memory storage) on {args.host}:{args.port}", file=sys.stderr, flush=True)
    exec_broker(args.host, args.port)
    return 0


def _topic_dump(args: argparse.Namespace) -> int:
    from mlprep.kafka.dump import dump_topic

    for key, value in dump_topic(Settings(), args.topic, args.wait):
        line = value.decode("utf-8", "backslashreplace") if value is not None else ""
        if args.keys:
            line = f"{key.decode('utf-8', 'backslashreplace') if key else ''}\t{line}"
        print(line)
    return 0


def _log_to_stderr() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def _fetch(args: argparse.Namespace) -> int:
    from mlprep.build.fetch import fetch

    result = fetch(args.run_id, args.dest, args.preprocessing_path)
    print(f"mlprep: fetched {len(result.files)} files of run {args.run_id} into {result.folder}", file=sys.stderr)
    return 0


def _build(args: argparse.Namespace) -> int:
    from mlprep.build.images import BuildOptions, build_preprocessing_image

    options = BuildOptions(
        run_id=args.run_id,
        image_name=args.image_name,
        tag=args.tag,
        preprocessing_path=args.preprocessing_path,
        python_version=args.python_version,
        base_image=args.base_image,
        dockerfile=args.dockerfile,
        no_cache=args.no_cache,
    )
    result = build_preprocessing_image(options)
    print(result.reference)
    return 0


def _build_model(args: argparse.Namespace) -> int:
    from mlprep.build.images import build_model_image

    result = build_model_image(args.model_source, args.image_name, args.tag, args.base_image, args.python_version)
    print(result.reference)
    return 0


def _build_api(args: argparse.Namespace) -> int:
    import uvicorn

    from mlprep.build.api.app import create_app

    print(f"mlprep: build API on http://{args.host}:{args.port} (docs at /docs)", file=sys.stderr, flush=True)
    uvicorn.run(create_app(load_settings()), host=args.host, port=args.port, log_level="info")
    return 0


def _base_image(args: argparse.Namespace) -> int:
    from mlprep.build.base_image import build_base_image

    print(build_base_image(args.python_version, args.tag, args.mirror, args.force))
    return 0


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null so that the flush at exit cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


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
        return args.handler(args)
    except MlprepError as exc:
        print(f"mlprep: error: {redact(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `mlprep run big.jsonl | head`
        _stdout_to_devnull()
        return 0
    except KeyboardInterrupt as exc:
        return 128 + (signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT)
