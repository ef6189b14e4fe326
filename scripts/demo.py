"""The main job on embedded defaults, printing what it does:
1. the example preprocessing over the shipped sample data in batch mode (JSONL, JSON, Avro) and
   through the REST API;
2. from MLflow to predictions: the example run in a local MLflow store (.demo/mlflow.db), its
   preprocessing fetched and applied to the sample data; and when a Docker engine answers, the
   image built from the run and the sample data preprocessed in a container.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import fastavro
import httpx

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".demo"
EXAMPLE = ROOT / "examples" / "simple_preprocessing.py"
DATA = ROOT / "examples" / "data"
MLPREP = [sys.executable, "-m", "mlprep"]


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def batch(*args: str, preprocessing: Path = EXAMPLE) -> None:
    print(f"$ mlprep run -p {preprocessing.relative_to(ROOT)} " + " ".join(args), flush=True)
    result = subprocess.run(
        [*MLPREP, "run", "-p", str(preprocessing), *args], capture_output=True, text=True, check=False
    )
    for line in result.stdout.splitlines()[:2]:
        print("  " + line)
    print("  " + result.stderr.strip().splitlines()[-1])
    if result.returncode != 0:
        raise SystemExit(f"demo failed: mlprep run exited {result.returncode}")


def make_avro() -> Path:
    schema = fastavro.parse_schema(json.loads((DATA / "customer.avsc").read_text()))
    records = [json.loads(line) for line in (DATA / "sample.jsonl").read_text().splitlines()[:5]]
    path = WORK / "sample.avro"
    with path.open("wb") as handle:
        fastavro.writer(handle, schema, records)
    return path


def serve_and_call() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PREPROCESSING_DIR": str(EXAMPLE), "API_HOST": "127.0.0.1", "API_PORT": str(port)}
    log = (WORK / "api.log").open("wb")
    server = subprocess.Popen([*MLPREP, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            for _ in range(100):
                try:
                    client.get("/health")
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            print(f"API up on {url} (Swagger UI: {url}/docs)")
            health = client.get("/health").json()
            print(f"GET /health -> {health['status']}, preprocessing {health['preprocessing']['path']}")
            record = json.loads((DATA / "sample.jsonl").read_text().splitlines()[0])
            answer = client.post("/preprocess", json={"data": record}).json()
            print(f"POST /preprocess -> {json.dumps(answer)}")
            records = [json.loads(line) for line in (DATA / "sample.jsonl").read_text().splitlines()]
            answer = client.post("/preprocess/batch", json={"data": records}).json()
            kept = sum(r is not None for r in answer["results"])
            print(f"POST /preprocess/batch ({len(records)} records) -> {kept} results, {len(answer['errors'])} errors")
    finally:
        server.terminate()
        server.wait(timeout=10)


def mlflow_to_container() -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{WORK}/mlflow.db"}
    step("MLflow: the example run (experiment preprocessing-runs, local store .demo/mlflow.db)")
    created = subprocess.run(
        [sys.executable, str(ROOT / "setup_mlflow_local.py")],
        cwd=WORK,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = created.stdout.strip().splitlines()
    run_id = lines[-1]
    print(f"  {lines[-2]}\n  run id: {run_id}")
    step("Fetch the run's preprocessing and apply it to the sample data")
    fetched = WORK / "fetched"
    shutil.rmtree(fetched, ignore_errors=True)
    subprocess.run([*MLPREP, "fetch", run_id, str(fetched)], cwd=WORK, env=env, check=True)
    batch(str(DATA / "sample.jsonl"), preprocessing=fetched)
    step("Docker: build the image named from the run's tags and run it")
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        print("  no Docker engine answers: image build skipped (start dockerd and run make demo again)")
        return
    env["MLPREP_BASE_IMAGE"] = base_image(env)
    built = subprocess.run(
        [str(ROOT / "build.sh"), run_id], cwd=WORK, env=env, capture_output=True, text=True, check=False
    )
    if built.returncode != 0:
        raise SystemExit(f"demo failed: build.sh exited {built.returncode}:\n{built.stderr[-3000:]}")
    image = built.stdout.strip().splitlines()[-1]
    print(f"  $ ./build.sh {run_id}\n  {built.stderr.strip().splitlines()[-1]}")
    print(f"  $ docker run -i --network host {image} < examples/data/sample.jsonl")
    with (DATA / "sample.jsonl").open("rb") as source:
        ran = subprocess.run(
            ["docker", "run", "-i", "--rm", "--network", "host", image],
            stdin=source,
            capture_output=True,
            text=True,
            check=False,
        )
    for line in ran.stdout.splitlines()[:2]:
        print("  " + line)
    print("  " + ran.stderr.strip().splitlines()[-1])


def base_image(env: dict[str, str]) -> str:
    """MLPREP_BASE_IMAGE, else the local registry-free base image (built once), else python:3.11-slim."""
    if env.get("MLPREP_BASE_IMAGE"):
        return env["MLPREP_BASE_IMAGE"]
    made = subprocess.run([*MLPREP, "base-image"], capture_output=True, text=True, check=False)
    if made.returncode == 0:
        return made.stdout.strip()
    print(f"  no local base image ({made.stderr.strip().splitlines()[-1]}): using python:3.11-slim")
    return "python:3.11-slim"


def main() -> None:
    WORK.mkdir(exist_ok=True)
    step("Batch mode: JSONL, JSON and Avro in, JSONL out")
    batch(str(DATA / "sample.jsonl"))
    batch(str(DATA / "sample.json"))
    batch(str(make_avro()))
    step("REST API")
    serve_and_call()
    mlflow_to_container()
    print("\nDemo done. Outputs and logs are in .demo/")


if __name__ == "__main__":
    main()
