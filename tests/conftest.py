"""Shared helpers: write a user's preprocessing folder, run the real CLI, start the real server."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mlprep import services

ROOT = Path(__file__).resolve().parent.parent
MLPREP = [sys.executable, "-m", "mlprep"]


def write_files(folder: Path, files: dict[str, str]) -> Path:
    """Write ``{relative path: source}`` under ``folder`` (dedented) and return the folder."""
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return folder


@pytest.fixture
def make_preprocessing(tmp_path: Path):
    """``make_preprocessing(code, **siblings)`` writes preprocessing.py (+ siblings) in a new folder."""
    counter = iter(range(1000))

    def make(code: str, extra: dict[str, str] | None = None) -> Path:
        folder = tmp_path / f"pp{next(counter)}"
        return write_files(folder, {"preprocessing.py": code, **(extra or {})})

    return make


IDENTITY = "def pre_processing(data):\n    return data\n"


def run_cli(
    *args: str,
    stdin: bytes | None = b"",
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m mlprep ARGS`` as a user would."""
    return subprocess.run(
        [*MLPREP, *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


free_port = services.free_port


class ProcessServer:
    """A real server process on a loopback port, up when ``health`` answers 200."""

    def __init__(
        self,
        command: list[str],
        env: dict[str, str],
        port: int,
        log: Path,
        health: str = "/health",
        cwd: Path | None = None,
        timeout: float = 30,
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.process = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=cwd
        )
        self.client = httpx.Client(base_url=self.url, timeout=60)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()[-3000:]}")
            try:
                if self.client.get(health).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.process.kill()  # never left running behind a failed test
        self.process.wait(timeout=20)
        raise RuntimeError(f"server did not start: {log.read_text()[-3000:]}")

    def stop(self, kill: bool = False) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.kill() if kill else self.process.terminate()
            self.process.wait(timeout=20)


class FakeTracking:
    """An HTTP server on loopback that says healthy but fails (after ``delay`` s) every MLflow call."""

    def __init__(self, delay: float = 0.0) -> None:
        self.release = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(handler) -> None:
                if handler.path != "/health":
                    self.release.wait(delay)
                handler.send_response(200 if handler.path == "/health" else 500)
                handler.end_headers()
                handler.wfile.write(b"OK" if handler.path == "/health" else b"<html>boom</html>")

            def log_message(handler, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()


class Server(ProcessServer):
    """A real ``mlprep serve`` process on a loopback port."""

    def __init__(self, preprocessing: Path, env: dict[str, str] | None = None) -> None:
        port = free_port()
        full_env = {
            "API_HOST": "127.0.0.1",
            "API_PORT": str(port),
            "PREPROCESSING_DIR": str(preprocessing),
            **(env or {}),
        }
        super().__init__([*MLPREP, "serve"], full_env, port, preprocessing.parent / f"server-{port}.log")


@pytest.fixture
def serve() -> Iterator:
    servers: list[Server] = []

    def start(preprocessing: Path, env: dict[str, str] | None = None) -> Server:
        server = Server(preprocessing, env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def mlflow_server():
    """A real MLflow tracking server for the session."""
    from infra import MlflowServer

    server = MlflowServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def example_run(mlflow_server) -> str:
    """The run id of setup_mlflow_local.py (model name ``testmodel``, version v1)."""
    from infra import create_example_run

    return create_example_run(mlflow_server, "testmodel")


@pytest.fixture(scope="session")
def base_image() -> str:
    """The local base image tag (Docker engine started and image built if needed)."""
    from infra import ensure_base_image

    return ensure_base_image()


@pytest.fixture(scope="session")
def kafka_broker():
    from infra import KafkaBroker

    broker = KafkaBroker()
    yield broker
    broker.stop()


PREPROCESSING_IMAGE = "preprocessing-testmodel-v1"


@pytest.fixture(scope="session")
def built_image(mlflow_server, example_run, base_image) -> str:
    """./build.sh RUN_ID: the image named from the run's tags."""
    env = {**os.environ, **mlflow_server.env(), "MLPREP_BASE_IMAGE": base_image}
    result = subprocess.run(
        [str(ROOT / "build.sh"), example_run], capture_output=True, text=True, env=env, timeout=900, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == f"{PREPROCESSING_IMAGE}:latest"
    assert "Step 1/" in result.stderr  # Docker's log was streamed
    assert f"built {PREPROCESSING_IMAGE}:latest (" in result.stderr
    return f"{PREPROCESSING_IMAGE}:latest"


@dataclass(frozen=True)
class ChurnModel:
    """The churn model registered on the session's MLflow server, alias ``champion`` on its version."""

    name: str
    version: str
    run_id: str
    preprocessing: Path  # the run's preprocessing.py as ``mlprep fetch`` gets it
    records: list[dict]  # raw customer records (no label), as a client sends them

    @property
    def uri(self) -> str:
        return f"models:/{self.name}@champion"


@pytest.fixture(scope="session")
def churn_model(mlflow_server, tmp_path_factory) -> ChurnModel:
    """The churn pipeline's training run on the session server (scikit-learn pipeline, signature,
    its features.py logged as preprocessing.py), registered with alias ``champion``."""
    import uuid

    import mlflow

    from churn import data, pipeline

    folder = tmp_path_factory.mktemp("churn-model")
    frame = data.generate(1500, seed=7)
    frame.to_csv(folder / "customers.csv", index=False)
    name = f"churn-{uuid.uuid4().hex[:6]}"
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = mlflow_server.url
    mlflow.set_tracking_uri(mlflow_server.url)
    try:
        trained = pipeline.run_training(folder / "customers.csv", model_name=name, experiment_name=name)
        mlflow.MlflowClient().set_registered_model_alias(name, "champion", trained["version"])
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous
    fetched = run_cli("fetch", trained["run_id"], str(folder / "code"), env=mlflow_server.env(), timeout=120)
    assert fetched.returncode == 0, fetched.stderr[-3000:]
    records = frame.drop(columns=[data.TARGET]).head(300).to_dict(orient="records")
    return ChurnModel(name, str(trained["version"]), trained["run_id"], folder / "code", records)
