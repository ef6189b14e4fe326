"""REST throughput under wrk on loopback: mlprep's /preprocess and /preprocess/batch (100 records)
against `mlflow models serve` of an identity pyfunc (/invocations), one worker each.

Needs the bench extras (mlflow) and wrk (Debian package): run it through `make bench`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import httpx
from common import IDENTITY, PYTHON, WORK, report
from peers.run import RECORD  # the record every REST benchmark sends

from mlprep import services
from mlprep.services import free_port

DURATION = os.environ.get("MLPREP_BENCH_DURATION", "8s")
CONNECTIONS = "16"


def wrk(url: str, body: dict) -> float:
    """Requests per second of POST ``body`` to ``url``; fails on any non-2xx answer."""
    script = WORK / "post.lua"
    payload = json.dumps(body)
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = {json.dumps(payload)}\n'
    )
    check = httpx.post(url, content=payload, headers={"Content-Type": "application/json"}, timeout=30)
    if check.status_code != 200:
        raise SystemExit(f"{url} answered {check.status_code}: {check.text[:300]}")
    result = subprocess.run(
        ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{DURATION}", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    )
    if "Non-2xx" in result.stdout:
        raise SystemExit(f"errors under load on {url}:\n{result.stdout}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", result.stdout).group(1))


def start_mlflow_identity() -> tuple[subprocess.Popen, str]:
    import mlflow.pyfunc

    class Identity(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input

    path = WORK / "identity-pyfunc"
    shutil.rmtree(path, ignore_errors=True)
    mlflow.pyfunc.save_model(str(path), python_model=Identity())
    port = free_port()
    process = services.start_model_server(str(path), port)
    return process, f"http://127.0.0.1:{port}"


def start_mlprep() -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PREPROCESSING_DIR": str(IDENTITY), "API_HOST": "127.0.0.1", "API_PORT": str(port)}
    process = subprocess.Popen(
        [PYTHON, "-m", "mlprep", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return process, f"http://127.0.0.1:{port}"


def main() -> bool:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (make bench does it)")
    batch = [dict(RECORD, customer_id=f"C{i:04d}") for i in range(100)]
    ours, ours_url = start_mlprep()
    theirs, theirs_url = start_mlflow_identity()
    try:
        services.wait_http(f"{ours_url}/health", process=ours)
        services.wait_http(f"{theirs_url}/ping", process=theirs)
        mlprep_single = wrk(f"{ours_url}/preprocess", {"data": RECORD})
        mlprep_batch = wrk(f"{ours_url}/preprocess/batch", {"data": batch})
        mlflow_single = wrk(f"{theirs_url}/invocations", {"dataframe_records": [RECORD]})
        mlflow_batch = wrk(f"{theirs_url}/invocations", {"dataframe_records": batch})
    finally:
        services.stop_group(ours)
        services.stop_group(theirs)
    ok = report(
        "REST, single record per request (wrk, 16 connections, one server worker)",
        [("mlflow models serve /invocations", mlflow_single), ("mlprep /preprocess", mlprep_single)],
        "req/s",
        "mlflow models serve /invocations",
        {"mlprep /preprocess": 2.0},
    )
    ok &= report(
        "REST, batches of 100 records",
        [("mlflow models serve /invocations", mlflow_batch * 100), ("mlprep /preprocess/batch", mlprep_batch * 100)],
        "records/s",
        "mlflow models serve /invocations",
        {"mlprep /preprocess/batch": 2.0},
    )
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
