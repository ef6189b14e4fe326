"""Real parts for the workshop tests: an MLflow server that serves artifacts (as the Docker stack's
does) and a Prefect server, both on loopback; the workshop's scripts run as students run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from infra import ROOT, MlflowServer, start_server, stop_server
from mlflow import MlflowClient

from mlprep.services import free_port

WORKSHOP = ROOT / "pipelines" / "workshop"
DATA = ROOT / "data" / "customer_data.csv"


class PrefectServer:
    """``prefect server start`` on a loopback port, its database in a folder of its own."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="mlprep-prefect-"))
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        env = {**os.environ, "PREFECT_HOME": str(self.folder), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        env.pop("PREFECT_API_URL", None)
        command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        self.process = start_server("prefect server", command, self.folder, f"{self.api}/health", env)

    def stop(self) -> None:
        stop_server(self.process, self.folder)


@pytest.fixture(scope="session")
def mlflow_stack() -> Iterator[MlflowServer]:
    server = MlflowServer(serve_artifacts=True)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[PrefectServer]:
    server = PrefectServer()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def workshop_env(mlflow_stack, prefect_server, tmp_path_factory) -> dict[str, str]:
    """What a student's shell holds once the stack is up (plus a short 'expensive' feature step)."""
    return {
        "MLFLOW_TRACKING_URI": mlflow_stack.url,
        "PREFECT_API_URL": prefect_server.api,
        "PREFECT_HOME": str(tmp_path_factory.mktemp("prefect-client")),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "CHURN_DATA_PATH": str(DATA),
        "CHURN_FEED_DIR": str(tmp_path_factory.mktemp("feed")),
        "WORKSHOP_EXPENSIVE_SECONDS": "0.5",
        "DAGSTER_HOME": str(tmp_path_factory.mktemp("dagster-home")),
    }


@pytest.fixture
def mlflow_client(mlflow_stack) -> MlflowClient:
    return MlflowClient(tracking_uri=mlflow_stack.url)


def run_script(
    script: Path, *args: str, env: dict[str, str], timeout: float = 300, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``python SCRIPT ARGS`` as a student types it, in the workshop's environment."""
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=timeout,
        cwd=cwd,
        check=False,
    )


def run_churn(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m churn ARGS`` (the trainer's commands) in the workshop's environment."""
    return subprocess.run(
        [sys.executable, "-m", "churn", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
        check=False,
    )


def last_json(result: subprocess.CompletedProcess[str]) -> dict:
    """The JSON result a workshop script prints as its last line (failing with its output if none)."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return json.loads(lines[-1])


class Receiver:
    """A local HTTP endpoint standing for Discord and Slack webhooks: it keeps what it receives."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def webhook_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()
