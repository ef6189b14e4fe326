"""Build Docker images from MLflow: the preprocessing image of a run (alone, or with a registered model
in the same image), and the model image.

The build context is assembled in a temporary folder from the Dockerfiles and entrypoints shipped in
this package (``mlprep/build/docker/``), the runtime part of ``mlprep`` (never this build side), its
locked dependencies and the code fetched from the run; ``docker build --network host`` streams its log.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import mlprep
from mlprep.build import docker_cli, naming, publish
from mlprep.build.docker_cli import Log
from mlprep.build.fetch import fetch, tracking_uri
from mlprep.build.naming import (
    AUTO,
    ValidationError,
    auto_image_name,
    check_image_name,
    check_image_reference,
    check_run_id,
    check_tag,
    without_credentials,
)
from mlprep.errors import MlprepError
from mlprep.redaction import redact
from mlprep.runtime.loader import ENTRY_FILE

PYTHON_VERSION = re.compile(r"3\.[0-9]{1,2}")
MODEL_SOURCE = re.compile(r"models:/[A-Za-z0-9_.@/ -]+|runs:/[A-Za-z0-9_-]+/[A-Za-z0-9_./-]+|m-[0-9a-f]{32}")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


DOCKER = Path(__file__).resolve().parent / "docker"  # package data: Dockerfiles, entrypoints, the lock
PACKAGE = Path(mlprep.__file__).resolve().parent
RUNTIME_LOCK = DOCKER / "runtime.lock"  # the runtime's dependencies, pinned with hashes (make lock)
BUILD_API_LOCK = DOCKER / "build-api.lock"  # the runtime's and the build side's, for the build API image
BUILD_API_DOCKERFILE = DOCKER / "Dockerfile.build-api"
BUILD_API_IMAGE = "mlprep-build-api"  # the name deploy/kubernetes/overlays/build-api pins
LEFT_OUT = ("build",)  # what images never hold: this build side (MLflow client, Docker access, build API)


def dockerfiles() -> dict[str, Path]:
    """The Dockerfiles shipped with the package, by name (what the build API may choose from).

    Not the build API's own: it builds no preprocessing image.
    """
    return {
        p.name: p
        for p in sorted(DOCKER.iterdir())
        if p.is_file() and p.name.startswith("Dockerfile") and p != BUILD_API_DOCKERFILE
    }


def default_base_image(python_version: str) -> str:
    return f"python:{python_version}-slim"


def check_python_version(version: str) -> str:
    if not PYTHON_VERSION.fullmatch(version):
        raise ValidationError("python_version", f"invalid Python version {version!r}: expected e.g. 3.11")
    return version


@dataclass
class BuildOptions:
    """What one preprocessing image build takes (validated by ``validate``)."""

    run_id: str
    image_name: str = AUTO
    tag: str = "latest"
    preprocessing_path: str = ENTRY_FILE
    python_version: str = "3.11"
    base_image: str | None = None
    dockerfile: Path | None = None
    tracking_uri: str | None = None
    no_cache: bool = False
    push: bool = False  # push to the registry of the image name, then record the digest in MLflow
    registry: str | None = None  # REGISTRY: the image is named REGISTRY/name unless its name has one
    with_model: str | None = None  # a model URI: its files and requirements go into the same image

    def validate(self) -> BuildOptions:
        check_run_id(self.run_id)
        if self.with_model is not None:
            check_model_source(self.with_model, "with_model")
            if self.dockerfile is not None:
                raise ValidationError(
                    "dockerfile", "--with-model builds on mlprep's own Dockerfile: drop --dockerfile or --with-model"
                )
        if self.image_name != AUTO:
            check_image_name(self.image_name)
        check_tag(self.tag)
        check_python_version(self.python_version)
        if self.base_image:
            check_image_reference(self.base_image)
        if self.dockerfile is not None and not Path(self.dockerfile).is_file():
            raise ValidationError("dockerfile", f"Dockerfile not found: {self.dockerfile}")
        return self


@dataclass
class BuildResult:
    image: str
    tag: str
    size_bytes: int
    seconds: float
    labels: dict[str, str] = field(default_factory=dict)
    docker_seconds: float = 0.0  # of ``seconds``, the time spent in ``docker build``
    digest: str | None = None  # repository@sha256:... once pushed

    @property
    def reference(self) -> str:
        return f"{self.image}:{self.tag}"

    def summary(self) -> str:
        pushed = f", pushed as {self.digest}" if self.digest else ""
        return (
            f"built {self.reference} ({self.size_bytes / 1e6:.1f} MB) in {self.seconds:.1f} s "
            f"(docker build {self.docker_seconds:.1f} s){pushed}"
        )


def build_preprocessing_image(
    options: BuildOptions, log: Log = _stderr, cancel: threading.Event | None = None
) -> BuildResult:
    """Fetch the run's preprocessing and build its image; the log streams through ``log``."""
    options.validate()
    begin = time.monotonic()
    docker_cli.engine_version()
    uri = options.tracking_uri or tracking_uri()
    with tempfile.TemporaryDirectory(prefix="mlprep-build-") as scratch:
        context = Path(scratch)
        log(f"fetching the preprocessing of run {options.run_id} from {without_credentials(uri)}")
        fetched = fetch(options.run_id, context / "preprocessing", options.preprocessing_path, uri, log)
        image = auto_image_name(fetched.tags) if options.image_name == AUTO else options.image_name
        model = _add_model(context, options.with_model, uri, log) if options.with_model else None
        if model is not None and options.image_name == AUTO:
            suffix = model.version or model_name_and_version(model.source)[1]  # runs:/ID/...: the run's id
            image = f"{image}-model-{naming.sanitize_component(suffix)}"
        image = publish.qualify(image, options.registry)
        if not (context / "preprocessing" / "requirements.txt").exists():
            (context / "preprocessing" / "requirements.txt").write_text("")
        _assemble_runner(context)
        tags = fetched.tags
        base = options.base_image or default_base_image(options.python_version)
        labels = _labels(
            image,
            tags.get("version", ""),
            base,
            uri,
            {
                "io.mlflow.run_id": options.run_id,
                "io.mlflow.model_name": tags.get("model_name", ""),
                "io.mlflow.type": tags.get("type", "preprocessing"),
                **(model.labels() if model else {}),
            },
        )
        dockerfile = Path(options.dockerfile) if options.dockerfile else DOCKER / "Dockerfile"
        if model is not None:
            dockerfile = context / "Dockerfile.with-model"
            dockerfile.write_text(with_model_dockerfile((DOCKER / "Dockerfile").read_text()))
        log(f"building {image}:{options.tag} from {base}")
        docker_begin = time.monotonic()
        _docker_build(
            context,
            dockerfile,
            f"{image}:{options.tag}",
            options.python_version,
            base,
            labels,
            log,
            cancel,
            options.no_cache,
        )
        docker_seconds = time.monotonic() - docker_begin
    reference = f"{image}:{options.tag}"
    result = BuildResult(
        image, options.tag, docker_cli.image_size(reference), time.monotonic() - begin, labels, docker_seconds
    )
    if options.push:
        _push_and_record(result, log, cancel, uri, run_id=options.run_id, model_source=model.uri if model else None)
    log(result.summary())
    return result


def _push_and_record(
    result: BuildResult,
    log: Log,
    cancel: threading.Event | None,
    uri: str,
    run_id: str | None = None,
    model_source: str | None = None,
) -> None:
    """Push the image, then tell MLflow (only after the registry accepted it); an image of a run's
    preprocessing with a model is recorded on both, beside their own images."""
    log(f"pushing {result.reference}")
    pushed = publish.push(result.reference, log, cancel)
    result.digest = pushed.digest
    try:
        publish.record(pushed, uri, run_id, model_source, with_model=bool(run_id and model_source))
    except Exception as exc:
        raise MlprepError(
            f"pushed {pushed.digest} but could not tag it in MLflow at {without_credentials(uri)}: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    log(f"recorded {pushed.digest} in MLflow")


def _assemble_runner(context: Path) -> None:
    """What the image runs, beside the fetched preprocessing: the runtime and its front ends only."""

    _copy_package(context / "lib" / "mlprep", LEFT_OUT)
    (context / "runner").mkdir()
    shutil.copy2(DOCKER / "runner.py", context / "runner" / "runner.py")
    for name in ("entrypoint.sh", "mlprep"):
        shutil.copy2(DOCKER / name, context / name)
    shutil.copy2(RUNTIME_LOCK, context / "runtime.lock")


def _copy_package(destination: Path, left_out: tuple[str, ...] = ()) -> None:
    """``mlprep`` into ``destination``, without caches and the sub-packages ``left_out``."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = {n for n in names if n == "__pycache__" or n.endswith(".pyc")}
        return skipped | (set(left_out) & set(names) if Path(folder) == PACKAGE else set())

    shutil.copytree(PACKAGE, destination, ignore=ignore)


def _labels(image: str, version: str, base: str, uri: str, specific: dict[str, str]) -> dict[str, str]:
    """OCI and MLflow labels, given to ``docker build --label`` (no Dockerfile step, any Dockerfile)."""
    return {
        "org.opencontainers.image.title": image,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.base.name": base,
        "io.mlflow.model_version": version,
        "io.mlflow.tracking_uri": without_credentials(uri) or "",
        "io.mlprep.version": mlprep.__version__,
        **specific,
    }


def _docker_build(
    context: Path,
    dockerfile: Path,
    reference: str,
    python_version: str,
    base: str,
    labels: dict[str, str],
    log: Log,
    cancel: threading.Event | None,
    no_cache: bool = False,
) -> None:
    command = [
        "build",
        "--network",
        "host",
        "-f",
        str(dockerfile),
        "-t",
        reference,
        "--build-arg",
        f"PYTHON_VERSION={python_version}",
        "--build-arg",
        f"BASE_IMAGE={base}",
    ]
    if no_cache:
        command.append("--no-cache")
    for key, value in labels.items():
        command += ["--label", f"{key}={value}"]
    command.append(str(context))
    docker_cli.run_streamed(command, log, cancel)


# --- preprocessing and model in one image ---------------------------------------------------------

MODEL_FOLDER = "/opt/model"  # where the model's files are in an image built with --with-model
# Inserted into the preprocessing Dockerfile before its step "# 2." (the run's requirements): the
# model's requirements, the largest install, are a layer of their own, reused as long as they do not
# change; what they install is then pinned (PIP_CONSTRAINT), so the run's requirements cannot move a
# package the model was saved with, nor one of the runtime's.
MODEL_DEPENDENCIES = """# 1b. The model's dependencies (its requirements.txt, mlflow-skinny for mlflow), within the
#     runtime's versions; then everything installed is pinned for any later pip install.
COPY model-requirements.txt /tmp/build/model-requirements.txt
RUN pip freeze | grep -E '^[A-Za-z0-9._-]+==' > /opt/venv/constraints.txt \\
 && pip install -r /tmp/build/model-requirements.txt -c /opt/venv/constraints.txt \\
 && pip freeze | grep -E '^[A-Za-z0-9._-]+==' > /opt/venv/constraints.txt
ENV PIP_CONSTRAINT=/opt/venv/constraints.txt

"""
# Inserted before step "# 4." (the preprocessing code): the model's files, loaded from the image.
MODEL_FILES = f"""# 3b. The model's files, served from here: no tracking server at run time.
COPY model/ {MODEL_FOLDER}/
ENV MODEL_URI={MODEL_FOLDER}

"""


def with_model_dockerfile(dockerfile: str) -> str:
    """The preprocessing Dockerfile with the model's two steps put in, so the preprocessing part of the
    image is built by the very same steps as ``mlprep build`` without a model."""
    out, inserted = [], 0
    for line in dockerfile.splitlines(keepends=True):
        for marker, block in (("# 2. ", MODEL_DEPENDENCIES), ("# 4. ", MODEL_FILES)):
            if line.startswith(marker):
                out.append(block)
                inserted += 1
        out.append(line)
    if inserted != 2:
        raise MlprepError(f"{DOCKER / 'Dockerfile'} lacks the '# 2. ' and '# 4. ' steps --with-model builds on")
    return "".join(out)


@dataclass(frozen=True)
class ModelArtifacts:
    """The model copied into an image: the URI as given and what it resolved to when downloaded."""

    source: str  # as given: models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/PATH
    uri: str  # what was downloaded: models:/NAME/VERSION for a registered model
    name: str
    version: str | None
    flavor: str
    run_id: str | None

    def labels(self) -> dict[str, str]:
        found = {
            "io.mlflow.served_model.source": self.source,
            "io.mlflow.served_model.uri": self.uri,
            "io.mlflow.served_model.name": self.name,
            "io.mlflow.served_model.version": self.version,
            "io.mlflow.served_model.flavor": self.flavor,
            "io.mlflow.served_model.run_id": self.run_id,
            "io.mlflow.served_model.path": MODEL_FOLDER,
        }
        return {key: value for key, value in found.items() if value}


def _add_model(context: Path, source: str, uri: str, log: Log) -> ModelArtifacts:
    """The model of ``source`` into ``context/model`` and its requirements into ``model-requirements.txt``.

    An alias is resolved first and that version downloaded, so the image holds the version the alias
    named at build time, whatever it names later.
    """
    from mlflow.models import Model

    registered = publish.model_version(source, uri) if source.startswith("models:/") else None
    pinned = f"models:/{registered[0]}/{registered[1]}" if registered else source
    if pinned != source:
        log(f"{source} is version {registered[1] if registered else ''}")
    local = _download_model(pinned, context / "model", uri, log)
    _make_readable(local)
    metadata = Model.load(str(local / "MLmodel"))
    flavor = next((name for name in metadata.flavors if name != "python_function"), "python_function")
    (context / "model-requirements.txt").write_text(_model_requirements(local))
    name, version = registered or model_name_and_version(source)
    return ModelArtifacts(source, pinned, name, version if registered else None, flavor, metadata.run_id or None)


def _make_readable(folder: Path) -> None:
    """The image's user (10001) reads the model's files, whatever the umask they were written with."""
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _download_model(source: str, destination: Path, uri: str, log: Log) -> Path:
    """The MLflow model of ``source`` into ``destination`` (an MLflow model folder, checked)."""
    import mlflow.artifacts

    log(f"downloading {source} from {without_credentials(uri)}")
    scratch = destination.parent / f".{destination.name}-download"
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(scratch), tracking_uri=uri))
    except Exception as exc:
        raise MlprepError(
            f"cannot download {source} from {without_credentials(uri)}: "
            f"{redact(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__}"
        ) from exc
    if not (local / "MLmodel").is_file():
        raise MlprepError(f"{source} is not an MLflow model (no MLmodel file)")
    shutil.move(str(local), destination)
    shutil.rmtree(scratch, ignore_errors=True)
    return destination


# --- model image -----------------------------------------------------------------------------------


def check_model_source(source: str, field: str = "model_source") -> str:
    if not isinstance(source, str) or not MODEL_SOURCE.fullmatch(source) or ".." in source:
        raise ValidationError(
            field,
            f"invalid model source {source!r}: expected models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN_ID/PATH",
        )
    return source


def model_name_and_version(source: str) -> tuple[str, str]:
    """``models:/churn/3`` -> (churn, 3); ``models:/churn@champion`` -> (churn, champion)."""
    body = source.split(":/", 1)[-1].strip("/")
    if source.startswith("models:/"):
        if "@" in body:
            name, _, version = body.partition("@")
        else:
            name, _, version = body.partition("/")
        return name, version or "latest"
    run_id, _, path = body.partition("/")
    return path.replace("/", "-") or "model", run_id[:8]


def build_model_image(
    model_source: str,
    image_name: str | None = None,
    tag: str = "latest",
    base_image: str | None = None,
    python_version: str = "3.11",
    uri: str | None = None,
    log: Log = _stderr,
    cancel: threading.Event | None = None,
    push: bool = False,
    registry: str | None = None,
) -> BuildResult:
    """An image serving the MLflow model's /invocations on port 8080.

    With ``push``, the digest is written to the model version (sources ``models:/...``).
    """
    check_model_source(model_source)
    name, version = model_name_and_version(model_source)
    image = check_image_name(image_name) if image_name else naming.image_name("model", name, version)
    image = publish.qualify(image, registry)
    check_tag(tag)
    check_python_version(python_version)
    if base_image:
        check_image_reference(base_image)
    begin = time.monotonic()
    docker_cli.engine_version()
    uri = uri or tracking_uri()

    with tempfile.TemporaryDirectory(prefix="mlprep-model-") as scratch:
        context = Path(scratch)
        _download_model(model_source, context / "model", uri, log)
        shutil.copy2(DOCKER / "model-entrypoint.sh", context / "model-entrypoint.sh")
        (context / "model-requirements.txt").write_text(_model_requirements(context / "model"))
        base = base_image or default_base_image(python_version)
        labels = _labels(
            image,
            version,
            base,
            uri,
            {
                "io.mlflow.model_source": model_source,
                "io.mlflow.model_name": name,
                "io.mlflow.type": "model",
            },
        )
        log(f"building {image}:{tag} from {base}")
        docker_begin = time.monotonic()
        _docker_build(context, DOCKER / "Dockerfile.model", f"{image}:{tag}", python_version, base, labels, log, cancel)
        docker_seconds = time.monotonic() - docker_begin
    result = BuildResult(
        image, tag, docker_cli.image_size(f"{image}:{tag}"), time.monotonic() - begin, labels, docker_seconds
    )
    if push:
        _push_and_record(result, log, cancel, uri, model_source=model_source)
    log(result.summary())
    return result


def _model_requirements(model: Path) -> str:
    """The model's requirements with mlflow-skinny (serving needs no tracking server) and pandas."""
    source = model / "requirements.txt"
    lines = source.read_text().splitlines() if source.is_file() else []
    out = []
    for line in lines:
        match = re.fullmatch(r"\s*mlflow\s*(==\s*[\w.]+)?\s*", line)
        out.append(f"mlflow-skinny{match.group(1) or ''}" if match else line)
    if not any(re.match(r"^\s*mlflow-skinny", x) for x in out):
        out.append(f"mlflow-skinny=={_installed_mlflow()}")
    if not any(re.match(r"^\s*pandas\b", x) for x in out):
        out.append("pandas")
    return "\n".join(out) + "\n"


def _installed_mlflow() -> str:
    """The MLflow version on this host: the full package, or the skinny one a `[build]` install brings."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlflow")
    except PackageNotFoundError:
        return version("mlflow-skinny")


# --- build API image -------------------------------------------------------------------------------


def build_build_api_image(
    image_name: str = BUILD_API_IMAGE,
    tag: str | None = None,
    base_image: str | None = None,
    python_version: str = "3.11",
    log: Log = _stderr,
    cancel: threading.Event | None = None,
    push: bool = False,
    registry: str | None = None,
) -> BuildResult:
    """The image of ``mlprep build-api``: the whole package, its build side and the Docker CLI.

    Tagged with this mlprep version unless ``tag``; ``push`` pushes it (nothing is recorded in MLflow:
    no run or model version owns it).
    """
    image = publish.qualify(check_image_name(image_name), registry)
    tag = check_tag(tag or mlprep.__version__)
    check_python_version(python_version)
    if base_image:
        check_image_reference(base_image)
    begin = time.monotonic()
    docker_cli.engine_version()
    base = base_image or default_base_image(python_version)
    with tempfile.TemporaryDirectory(prefix="mlprep-build-api-") as scratch:
        context = Path(scratch)
        _copy_package(context / "lib" / "mlprep")
        shutil.copy2(DOCKER / "mlprep", context / "mlprep")
        shutil.copy2(BUILD_API_LOCK, context / "build-api.lock")
        labels = {
            "org.opencontainers.image.title": image,
            "org.opencontainers.image.version": mlprep.__version__,
            "org.opencontainers.image.base.name": base,
            "io.mlprep.version": mlprep.__version__,
        }
        log(f"building {image}:{tag} from {base}")
        docker_begin = time.monotonic()
        _docker_build(context, BUILD_API_DOCKERFILE, f"{image}:{tag}", python_version, base, labels, log, cancel)
        docker_seconds = time.monotonic() - docker_begin
    reference = f"{image}:{tag}"
    result = BuildResult(image, tag, docker_cli.image_size(reference), time.monotonic() - begin, labels, docker_seconds)
    if push:
        log(f"pushing {reference}")
        result.digest = publish.push(reference, log, cancel).digest
    log(result.summary())
    return result
