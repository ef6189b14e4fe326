"""mlprep's REST API against the floor (bare Starlette + orjson) and peer servers, under the same load.

Every server runs the identity function on the same 6-field record (one per request, and batches of
100), each in its own virtualenv (benchmarks/peers/venv.sh) with one server process, on the same
machine. wrk (-t1, PEERS_CONNECTIONS connections) loads one server at a time; rounds alternate between
the servers (the order reversed every other round) so a noisy neighbour hits them all alike, and the
table shows medians with their ranges, p50/p99 latency, and mlprep's ratio to each row.

Settings (environment): PEERS_ROUNDS (5), PEERS_DURATION (wrk -d, 10s), PEERS_CONNECTIONS (8),
PEERS (comma-separated subset of the server names below; default all). Quick run:
PEERS_ROUNDS=2 PEERS_DURATION=3s make bench-peers
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVERS = HERE / "servers"
ROUNDS = int(os.environ.get("PEERS_ROUNDS", "5"))
DURATION = os.environ.get("PEERS_DURATION", "10s")
CONNECTIONS = os.environ.get("PEERS_CONNECTIONS", "8")
WORK = Path(os.environ.get("MLPREP_BENCH_DIR", tempfile.gettempdir())) / "mlprep-peers"
RECORD = {
    "customer_id": "C0001",
    "tenure_months": 12,
    "monthly_charges": 70.35,
    "contract": "month_to_month",
    "payment_method": "electronic_check",
    "support_calls": 2,
}
BATCH = [dict(RECORD, customer_id=f"C{i:04d}") for i in range(100)]
MLPREP = "mlprep serve"
MLPREP_2 = "mlprep serve, API_WORKERS=2"


def _v2(records: list[dict]) -> dict:
    """The records as a V2 inference request: one input (column) per field."""
    kinds = {str: "BYTES", int: "INT64", float: "FP64"}
    return {
        "inputs": [
            {"name": name, "shape": [len(records)], "datatype": kinds[type(value)], "data": [r[name] for r in records]}
            for name, value in records[0].items()
        ]
    }


@dataclass
class Server:
    """One row of the table: how to start it, and where to send a record and a batch."""

    name: str
    venv: str | None  # a peer virtualenv (benchmarks/peers/venv.sh), or None for mlprep's own
    command: Callable[[Path, int], list[str]]  # (python, port) -> argv
    single: tuple[str, dict]  # path, body
    batch: tuple[str, dict]
    ready: str  # GET path answering 200 once it serves
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    prepare: Callable[[Path], None] | None = None  # run once with the venv's python before starting
    process: subprocess.Popen | None = None
    port: int = 0
    error: str | None = None
    results: dict[str, list[tuple[float, float, float]]] = field(default_factory=lambda: {"single": [], "batch": []})


def _mlflow_model(python: Path) -> None:
    subprocess.run(
        [str(python), str(SERVERS / "mlflow_model.py"), str(WORK / "identity-pyfunc")],
        check=True,
        capture_output=True,  # MLflow's warnings about pickled models: not the benchmark's business
    )


def _mlprep_env(workers: int) -> dict[str, str]:
    identity = WORK / "identity.py"
    identity.write_text("def pre_processing(data):\n    return data\n")
    return {"PREPROCESSING_DIR": str(identity), "API_HOST": "127.0.0.1", "API_WORKERS": str(workers)}


def servers() -> list[Server]:
    plain = ("/preprocess", {"data": RECORD}), ("/preprocess/batch", {"data": BATCH})
    mlprep = [sys.executable, "-m", "mlprep", "serve"]
    return [
        Server("floor: Starlette+orjson inline", "floor", lambda py, port: [py, SERVERS / "floor.py", "inline", port],
               *plain, "/health"),
        Server("floor: Starlette+orjson thread pool", "floor",
               lambda py, port: [py, SERVERS / "floor.py", "threadpool", port], *plain, "/health"),
        Server(MLPREP, None, lambda py, port: [*mlprep, "--port", port], *plain, "/health", env=_mlprep_env(1)),
        Server(MLPREP_2, None, lambda py, port: [*mlprep, "--port", port], *plain, "/health",
               env=_mlprep_env(2)),
        Server("MLServer 1.7.1 custom runtime", "mlserver",
               lambda py, port: [py.parent / "mlserver", "start", SERVERS / "mlserver"],
               ("/v2/models/identity/infer", _v2([RECORD])), ("/v2/models/identity/infer", _v2(BATCH)),
               "/v2/health/ready", env={"MLSERVER_PARALLEL_WORKERS": "0", "MLSERVER_HOST": "127.0.0.1",
                                        "MLSERVER_METRICS_ENDPOINT": "", "MLSERVER_LOGGING_LEVEL": "WARNING"}),
        Server("LitServe 0.2.19", "litserve", lambda py, port: [py, SERVERS / "litserve_server.py", port],
               ("/predict", {"data": RECORD}), ("/predict", {"data": BATCH}), "/health"),
        Server("BentoML 1.4.40", "bentoml",
               lambda py, port: [py.parent / "bentoml", "serve", "bentoml_service:Identity", "--port", port,
                                 "--host", "127.0.0.1"],
               ("/preprocess", {"data": RECORD}), ("/batch", {"data": BATCH}), "/readyz", cwd=SERVERS),
        Server("mlflow models serve 3.17.2", "mlflow",
               lambda py, port: [py, "-m", "mlflow", "models", "serve", "-m", WORK / "identity-pyfunc",
                                 "--env-manager", "local", "--host", "127.0.0.1", "-p", port, "--workers", "1"],
               ("/invocations", {"dataframe_records": [RECORD]}), ("/invocations", {"dataframe_records": BATCH}),
               "/ping", prepare=_mlflow_model),
    ]  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status
    except OSError:
        return 0


def _post(url: str, body: dict) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError as exc:
        return 0, str(exc).encode()


def start(server: Server) -> None:
    """Start ``server`` and wait until it answers a record; on failure keep why in ``server.error``."""
    if server.venv is None:
        python = Path(sys.executable)
    else:
        built = subprocess.run(["bash", str(HERE / "venv.sh"), server.venv], capture_output=True, text=True)
        if built.returncode != 0:
            server.error = f"cannot install {server.venv} here: {built.stderr.strip().splitlines()[-1:]}"
            return
        python = Path(built.stdout.strip()) / "bin" / "python"
    if server.prepare:
        server.prepare(python)
    server.port = free_port()
    env = {**os.environ, **server.env, "MLSERVER_HTTP_PORT": str(server.port)}
    if server.venv:
        env.pop("PYTHONPATH", None)
        env["PATH"] = f"{python.parent}:{env['PATH']}"
        env.update({"MLSERVER_GRPC_PORT": str(free_port()), "MLSERVER_METRICS_PORT": str(free_port())})
    log = (WORK / f"{re.sub(r'[^a-z0-9]+', '-', server.name.lower())}.log").open("wb")
    argv = [str(part) for part in server.command(python, server.port)]
    server.process = subprocess.Popen(
        argv, env=env, cwd=server.cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            server.error = f"exited with {server.process.returncode} at start (log: {log.name})"
            return
        if _get(f"http://127.0.0.1:{server.port}{server.ready}") == 200:
            break
        time.sleep(0.5)
    else:
        server.error = f"not ready within 120 s (log: {log.name})"
        return
    for kind in ("single", "batch"):
        path, body = getattr(server, kind)
        status, answer = _post(f"http://127.0.0.1:{server.port}{path}", body)
        if status != 200:
            server.error = f"{path} answered {status}: {answer[:200]!r}"
            return


def stop(server: Server) -> None:
    if server.process and server.process.poll() is None:
        pause(server, False)
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait()


def pause(server: Server, stopped: bool) -> None:
    """Stop (SIGSTOP) or continue a server's processes: an idle server that polls its queues (LitServe's
    workers, BentoML's) would otherwise take CPU from the one under load."""
    if server.process and server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGSTOP if stopped else signal.SIGCONT)


def measure(server: Server, duration: str) -> dict[str, tuple[float, float, float]]:
    """One record and one batch under wrk, with ``server`` continued for the time and stopped after."""
    pause(server, False)
    time.sleep(0.5)
    try:
        return {
            kind: wrk(f"http://127.0.0.1:{server.port}{getattr(server, kind)[0]}", getattr(server, kind)[1], duration)
            for kind in ("single", "batch")
        }
    finally:
        pause(server, True)


def _seconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def wrk(url: str, body: dict, duration: str) -> tuple[float, float, float]:
    """Requests/s, p50 and p99 latency (s) of POST ``body`` to ``url``; any non-2xx answer fails the row."""
    script = WORK / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(json.dumps(body))}\n"
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{duration}", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"errors under load on {url}:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = _seconds(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))
    p99 = _seconds(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))
    return rate, p50, p99


def _cell(samples: list[tuple[float, float, float]], scale: int) -> tuple[float, str]:
    rates = [rate * scale for rate, _, _ in samples]
    median = statistics.median(rates)
    p50 = statistics.median(s[1] for s in samples) * 1000
    p99 = statistics.median(s[2] for s in samples) * 1000
    return median, f"{median:>9,.0f} [{min(rates):,.0f}-{max(rates):,.0f}] p50 {p50:.2f} p99 {p99:.2f} ms"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def _load() -> str:
    """The load average when the table is printed: other work on the machine shows here."""
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def table(rows: list[Server]) -> None:
    ours = next((s for s in rows if s.name == MLPREP and not s.error), None)
    print(f"\n### REST, identity pre_processing, wrk -t1 -c{CONNECTIONS} -d{DURATION}, {ROUNDS} alternating rounds")
    print(f"machine: {os.cpu_count()} cores, {_cpu_model()}, Python {platform.python_version()}, load {_load()}")
    print("medians [min-max] of the rounds; p50/p99: medians of the rounds' wrk percentiles;")
    print("ratio: mlprep serve (API_WORKERS=1) over the row\n")
    for kind, scale, unit in (("single", 1, "req/s, one record"), ("batch", 100, "records/s, batches of 100")):
        print(f"{unit}:")
        base = _cell(ours.results[kind], scale)[0] if ours and ours.results[kind] else None
        for server in rows:
            if server.error:
                print(f"  {server.name:<38} not measured: {server.error}")
                continue
            median, text = _cell(server.results[kind], scale)
            ratio = f"   mlprep {base / median:5.2f}x" if base else ""
            print(f"  {server.name:<38} {text}{ratio}")
        two = next((s for s in rows if s.name == MLPREP_2 and not s.error), None)
        if base and two:
            print(f"  API_WORKERS=2 over API_WORKERS=1: {_cell(two.results[kind], scale)[0] / base:.2f}x")
        print()


def main() -> int:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (make bench-peers does it)")
    WORK.mkdir(parents=True, exist_ok=True)
    chosen = [s for s in servers() if not os.environ.get("PEERS") or s.name in os.environ["PEERS"].split(",")]
    try:
        for server in chosen:
            print(f"starting {server.name}", file=sys.stderr)
            start(server)
            if server.error:
                print(f"  {server.name}: {server.error}", file=sys.stderr)
                stop(server)
            pause(server, True)
        live = [s for s in chosen if not s.error]
        for server in live:  # warm-up, not counted
            measure(server, "2s")
        for number in range(ROUNDS):
            for server in live if number % 2 == 0 else live[::-1]:
                for kind, sample in measure(server, DURATION).items():
                    server.results[kind].append(sample)
            print(f"round {number + 1}/{ROUNDS} done", file=sys.stderr)
    finally:
        for server in chosen:
            stop(server)
    table(chosen)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
