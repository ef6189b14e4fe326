"""The main job on embedded defaults: the example preprocessing over the shipped sample data,
in batch mode (JSONL, JSON, Avro) and through the REST API. Prints what it does."""

from __future__ import annotations

import json
import os
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


def batch(*args: str) -> None:
    print("$ mlprep run " + " ".join(args), flush=True)
    result = subprocess.run([*MLPREP, "run", "-p", str(EXAMPLE), *args], capture_output=True, text=True, check=False)
    for line in result.stdout.splitlines()[:3]:
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


def main() -> None:
    WORK.mkdir(exist_ok=True)
    step("Batch mode: JSONL, JSON and Avro in, JSONL out")
    batch(str(DATA / "sample.jsonl"))
    batch(str(DATA / "sample.json"))
    batch(str(make_avro()))
    step("REST API")
    serve_and_call()
    print("\nDemo done. Outputs and logs are in .demo/")


if __name__ == "__main__":
    main()
