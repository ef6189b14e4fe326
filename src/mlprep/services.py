"""Starting local services and waiting for them: for the demo, the benchmarks and the tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from mlprep.errors import MlprepError


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 120, process: subprocess.Popen | None = None) -> None:
    """Return once ``url`` answers 200; MlprepError if ``process`` exits or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise MlprepError(f"the service behind {url} exited with status {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise MlprepError(f"{url} did not answer within {timeout:.0f} s")


def start_model_server(
    model_uri: str, port: int, env: dict[str, str] | None = None, log: Path | None = None
) -> subprocess.Popen:
    """``mlflow models serve`` of ``model_uri`` on 127.0.0.1:``port`` (one worker), in its own process group."""
    full_env = {**os.environ, **(env or {})}
    full_env["PATH"] = f"{Path(sys.executable).parent}:{full_env.get('PATH', '')}"  # it execs uvicorn
    output = log.open("ab") if log else subprocess.DEVNULL
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            model_uri,
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "-p",
            str(port),
            "--workers",
            "1",
        ],
        env=full_env,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_group(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM to the process group, SIGKILL if it lingers."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)
