"""The Docker engine through its CLI: argument lists only (never a shell), logs streamed line by line."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence

from mlprep.errors import MlprepError

Log = Callable[[str], None]


class DockerError(MlprepError):
    """The Docker CLI or engine failed; the message carries the end of its output."""


def docker_binary() -> str:
    found = shutil.which("docker")
    if found is None:
        raise DockerError("the docker command is not installed (Debian: apt-get install docker.io)")
    return found


def engine_version() -> str:
    """The engine's version; a DockerError saying how to start it when none answers."""
    result = subprocess.run(
        [docker_binary(), "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if result.returncode != 0 or not result.stdout.strip():
        raise DockerError(
            "no Docker engine answers (start it: `dockerd` or `systemctl start docker`): "
            + (result.stderr.strip().splitlines() or ["no output"])[-1]
        )
    return result.stdout.strip()


def run_streamed(args: Sequence[str], log: Log, cancel: threading.Event | None = None, tail: int = 30) -> None:
    """Run ``docker ARGS``, passing each output line to ``log``; DockerError on failure or cancel."""
    process = subprocess.Popen(
        [docker_binary(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        bufsize=1,
    )
    last: list[str] = []
    watcher = None
    if cancel is not None:

        def watch() -> None:
            cancel.wait()
            if process.poll() is None:
                process.terminate()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
    assert process.stdout is not None
    for line in process.stdout:
        line = line.rstrip("\n")
        log(line)
        last.append(line)
        del last[:-tail]
    code = process.wait()
    if cancel is not None and cancel.is_set():
        raise DockerError("cancelled")
    if code != 0:
        raise DockerError(f"docker {args[0]} failed (exit {code}):\n" + "\n".join(last))


def image_exists(reference: str) -> bool:
    result = subprocess.run([docker_binary(), "image", "inspect", reference], capture_output=True, check=False)
    return result.returncode == 0


def image_size(reference: str) -> int:
    result = subprocess.run(
        [docker_binary(), "image", "inspect", "--format", "{{.Size}}", reference],
        capture_output=True,
        text=True,
        check=False,
    )
    return int(result.stdout.strip()) if result.returncode == 0 and result.stdout.strip().isdigit() else 0
