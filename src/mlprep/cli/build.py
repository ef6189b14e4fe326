"""``mlprep fetch``, ``build``, ``build-model``, ``base-image``, ``build-api``, ``build-api-image``: the build side.

Registered only where the build side is installed (not in images, which run records and build nothing).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlprep.settings import Settings


BUILD_EPILOG = """examples:
  mlprep build e6c1131f4673449aa688ed1ffc3abbbe auto
  mlprep build e6c1131f4673449aa688ed1ffc3abbbe preprocessing-model-v1 --tag v1.0.0
  mlprep build e6c1131f4673449aa688ed1ffc3abbbe auto --preprocessing-path code/preprocessing.py
  mlprep build e6c1131f4673449aa688ed1ffc3abbbe auto --dockerfile docker/custom.Dockerfile
  mlprep build e6c1131f4673449aa688ed1ffc3abbbe auto --python-version 3.11
  mlprep build e6c1131f4673449aa688ed1ffc3abbbe auto --base-image mlprep-base:3.11-bookworm
  mlprep build e6c1131f4673449aa688ed1ffc3abbbe --with-model models:/churn@champion

then:
  echo '{"test": "data"}' | docker run -i preprocessing-model-v1:latest
  docker run -d -p 8000:8000 preprocessing-model-v1:latest
"""


def image_options(parser: argparse.ArgumentParser, settings: Settings) -> None:
    parser.add_argument("--python-version", default="3.11", help="Python of the image (default 3.11)")
    parser.add_argument(
        "--base-image",
        default=settings.mlprep_base_image,
        metavar="IMAGE",
        help="FROM image (env MLPREP_BASE_IMAGE; default python:<version>-slim); "
        "see `mlprep base-image` for hosts without a registry",
    )
    parser.add_argument(
        "--push",
        action="store_true",
        default=settings.push_images,
        help="push the image (credentials: `docker login REGISTRY`) and record its digest in MLflow "
        "(env MLPREP_PUSH_IMAGES)",
    )
    parser.add_argument(
        "--registry",
        default=settings.registry,
        metavar="HOST[:PORT][/PATH]",
        help="name the image REGISTRY/NAME:TAG unless its name has a registry (env MLPREP_REGISTRY)",
    )


def register(commands: argparse._SubParsersAction, settings: Settings) -> None:
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
    build.add_argument(
        "--with-model",
        metavar="MODEL_URI",
        help="also put this MLflow model in the image (models:/NAME@ALIAS, models:/NAME/VERSION, "
        "runs:/ID/PATH; an alias is resolved now), with its requirements, and set MODEL_URI to it; "
        "'auto' names the image {type}-{model_name}-{version}-model-{model version}",
    )
    image_options(build, settings)
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
    image_options(model, settings)
    model.set_defaults(handler=_build_model)

    images = commands.add_parser(
        "images",
        help="the pushed images MLflow knows for a run or a model version",
        description="Print KIND, IMAGE and DIGEST of each image pushed for RUN_ID (the preprocessing image) or "
        "models:/NAME/VERSION (the model image, and the preprocessing image of its run).",
        epilog="examples:\n  mlprep images e6c1131f4673449aa688ed1ffc3abbbe\n  mlprep images models:/churn/3",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    images.add_argument("target", metavar="RUN_ID|models:/NAME/VERSION")
    images.set_defaults(handler=_images)

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
        "WEBHOOK_TOLERANCE_SECONDS, MLFLOW_TRACKING_URI, MLPREP_BASE_IMAGE, MLPREP_REGISTRY, MLPREP_PUSH_IMAGES, "
        "MLPREP_PROMOTE_ALIASES.",
    )
    build_api.add_argument("--host", default=settings.build_api_host, help="env BUILD_API_HOST (default 127.0.0.1)")
    build_api.add_argument("--port", type=int, default=settings.build_api_port, help="env BUILD_API_PORT (8000)")
    build_api.set_defaults(handler=_build_api)

    api_image = commands.add_parser(
        "build-api-image",
        help="build the Docker image of the build API (mlprep with its build side and the Docker CLI)",
        description="Build the image deploy/kubernetes/overlays/build-api runs: `mlprep build-api` as user "
        "10001, with the Docker CLI for an engine reached through DOCKER_HOST or a mounted socket.",
        epilog="examples:\n  mlprep build-api-image\n"
        "  mlprep build-api-image --base-image mlprep-base:3.11-bookworm\n"
        "  mlprep build-api-image --registry ghcr.io/example --push\n\n"
        "then:\n  docker run -d -p 8000:8000 -e BUILD_API_TOKEN=change-me -e DOCKER_HOST=tcp://engine:2375 "
        "mlprep-build-api:0.1.0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    api_image.add_argument(
        "image_name", metavar="IMAGE_NAME", nargs="?", default="mlprep-build-api", help="default mlprep-build-api"
    )
    api_image.add_argument("--tag", help="image tag (default: the mlprep version)")
    image_options(api_image, settings)
    api_image.set_defaults(handler=_build_api_image)


def _fetch(args: argparse.Namespace, settings: Settings) -> int:
    from mlprep.build.fetch import fetch

    result = fetch(args.run_id, args.dest, args.preprocessing_path)
    print(f"mlprep: fetched {len(result.files)} files of run {args.run_id} into {result.folder}", file=sys.stderr)
    return 0


def _build(args: argparse.Namespace, settings: Settings) -> int:
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
        push=args.push,
        registry=args.registry,
        with_model=args.with_model,
    )
    result = build_preprocessing_image(options)
    print(result.digest or result.reference)
    return 0


def _build_model(args: argparse.Namespace, settings: Settings) -> int:
    from mlprep.build.images import build_model_image

    result = build_model_image(args.model_source, *_image_arguments(args), push=args.push, registry=args.registry)
    print(result.digest or result.reference)
    return 0


def _build_api_image(args: argparse.Namespace, settings: Settings) -> int:
    from mlprep.build.images import build_build_api_image

    result = build_build_api_image(*_image_arguments(args), push=args.push, registry=args.registry)
    print(result.digest or result.reference)
    return 0


def _image_arguments(args: argparse.Namespace) -> tuple[str | None, str | None, str | None, str]:
    """IMAGE_NAME, --tag, --base-image, --python-version of the image commands, in that order."""
    return args.image_name, args.tag, args.base_image, args.python_version


def _images(args: argparse.Namespace, settings: Settings) -> int:
    from mlprep.build.fetch import tracking_uri
    from mlprep.build.naming import check_run_id
    from mlprep.build.publish import images_of

    if not args.target.startswith("models:/"):
        check_run_id(args.target)
    found = images_of(args.target, tracking_uri())
    if not found:
        print(f"mlprep: MLflow knows no pushed image for {args.target} (build it with --push)", file=sys.stderr)
        return 1
    for kind, tags in found.items():
        print(f"{kind}\t{tags.get('mlprep.image', '-')}\t{tags.get('mlprep.image.digest', '-')}")
    return 0


def _build_api(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from mlprep.build.api.app import create_app

    print(f"mlprep: build API on http://{args.host}:{args.port} (docs at /docs)", file=sys.stderr, flush=True)
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")
    return 0


def _base_image(args: argparse.Namespace, settings: Settings) -> int:
    from mlprep.build.base_image import build_base_image

    print(build_base_image(args.python_version, args.tag, args.mirror, args.force))
    return 0
