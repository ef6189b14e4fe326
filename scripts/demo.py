"""The main job on embedded defaults, printing what it does:
1. the example preprocessing over the shipped sample data in batch mode (JSONL, JSON, Avro) and
   through the REST API;
2. from MLflow to predictions: the example run in a local MLflow store (.demo/mlflow.db), its
   preprocessing fetched and applied to the sample data; and when a Docker engine answers, the
   image built from the run and the sample data preprocessed in a container;
3. streaming on the embedded Kafka broker: synthetic astronomy alerts (Avro) through the stream
   processor, the bridge and an MLflow model server, to a topic of predictions.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import fastavro
import httpx

from mlprep import services

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
    port = services.free_port()
    env = {**os.environ, "PREPROCESSING_DIR": str(EXAMPLE), "API_HOST": "127.0.0.1", "API_PORT": str(port)}
    log = (WORK / "api.log").open("wb")
    server = subprocess.Popen([*MLPREP, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        services.wait_http(f"{url}/health", timeout=30, process=server)
        with httpx.Client(base_url=url, timeout=10) as client:
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


def streaming() -> None:
    """fink-alert -> stream processor -> preprocessed -> bridge -> model server -> predictions."""
    from mlprep.kafka.broker import start_broker
    from mlprep.kafka.dump import dump_topic
    from mlprep.settings import Settings

    alerts_dir = ROOT / "examples" / "alerts"
    step("Streaming: alerts -> preprocessing -> bridge -> model -> predictions (embedded Kafka broker)")
    broker_port, api_port, model_port = services.free_port(), services.free_port(), services.free_port()
    bootstrap = f"127.0.0.1:{broker_port}"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{WORK}/mlflow.db",
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_CONSUMER_CONFIG": '{"session.timeout.ms": 6000}',
        "PATH": f"{Path(sys.executable).parent}:" + os.environ["PATH"],
    }
    processes: list[subprocess.Popen] = []
    logs = WORK / "streaming.log"

    def start(command: list[str], extra: dict[str, str]) -> None:
        processes.append(
            subprocess.Popen(
                command,
                env={**env, **extra},
                cwd=WORK,
                stdout=logs.open("ab"),
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    processes.append(start_broker(port=broker_port, log=logs))
    try:
        uri = (
            subprocess.run(
                [sys.executable, str(alerts_dir / "train_alert_model.py")],
                cwd=WORK,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        print(f"  model {uri} trained on alert features, served by `mlflow models serve`")
        model = services.start_model_server(uri, model_port, env, logs)
        processes.append(model)
        subprocess.run(
            [
                sys.executable,
                str(alerts_dir / "generate_alerts.py"),
                "--count",
                "200",
                "--topic",
                "fink-alert",
                "--framing",
                "container",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        print(
            f"  200 synthetic alerts (Avro, one container per message, 3 cutouts each) in topic fink-alert on "
            f"{bootstrap}"
        )
        start(
            [*MLPREP, "kafka", "-p", str(alerts_dir / "alert_preprocessing.py")],
            {
                "INPUT_TOPIC": "fink-alert",
                "OUTPUT_TOPIC": "preprocessed",
                "INPUT_FORMAT": "avro",
                "SKIP_CUTOUTS": "true",
                "API_HOST": "127.0.0.1",
                "API_PORT": str(api_port),
            },
        )
        services.wait_http(f"http://127.0.0.1:{model_port}/ping", process=model)
        start(
            [*MLPREP, "bridge"],
            {
                "INPUT_TOPIC": "preprocessed",
                "OUTPUT_TOPIC": "predictions",
                "API_URL": f"http://127.0.0.1:{model_port}",
                "BATCH_SIZE": "100",
                "PASSTHROUGH_FIELDS": '["objectId", "magpsf"]',
            },
        )
        settings = Settings(kafka_bootstrap_servers=bootstrap)
        deadline, predictions = time.monotonic() + 120, []
        while len(predictions) < 200 and time.monotonic() < deadline:
            time.sleep(1)
            try:
                predictions = list(dump_topic(settings, "predictions", wait=1))
            except Exception:
                predictions = []
        health = httpx.get(f"http://127.0.0.1:{api_port}/health", timeout=5).json()["kafka"]
        print(
            f"  stream processor: {health['consumed']} alerts in, {health['produced']} feature records out, "
            f"{health['dead_lettered']} dead letters"
        )
        print(f"  topic predictions: {len(predictions)} predictions, e.g.")
        for key, value in predictions[:3]:
            print(f"    {key.decode()}: {value.decode()}")
        if len(predictions) < 200:
            raise SystemExit(f"demo failed: {len(predictions)} predictions of 200; see {logs}")
    finally:
        for process in reversed(processes):
            services.stop_group(process)


def main() -> None:
    WORK.mkdir(exist_ok=True)
    step("Batch mode: JSONL, JSON and Avro in, JSONL out")
    batch(str(DATA / "sample.jsonl"))
    batch(str(DATA / "sample.json"))
    batch(str(make_avro()))
    step("REST API")
    serve_and_call()
    mlflow_to_container()
    streaming()
    print("\nDemo done. Outputs and logs are in .demo/")


if __name__ == "__main__":
    main()
