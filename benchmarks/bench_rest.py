"""REST throughput under wrk on loopback: mlprep's /preprocess and /preprocess/batch (100 records)
against `mlflow models serve` of an identity pyfunc (/invocations), one worker each.

Needs the bench extras (mlflow) and wrk (Debian package): run it through `make bench`.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from common import IDENTITY, PYTHON, WORK, report, wrk
from peers.run import RECORD  # the record every REST benchmark sends

from mlprep import services
from mlprep.services import free_port


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
        mlprep_single, _ = wrk(f"{ours_url}/preprocess", {"data": RECORD})
        mlprep_batch, _ = wrk(f"{ours_url}/preprocess/batch", {"data": batch})
        mlflow_single, _ = wrk(f"{theirs_url}/invocations", {"dataframe_records": [RECORD]})
        mlflow_batch, _ = wrk(f"{theirs_url}/invocations", {"dataframe_records": batch})
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
