"""The stream processor, the stdout->Kafka mode and the bridge, against a real broker and processes."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import fastavro
import httpx
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from conftest import MLPREP, ROOT, ProcessServer, free_port, write_files

from mlprep import services
from mlprep.kafka.dump import dump_topic
from mlprep.kafka.framing import MessageDecoder, without_cutouts
from mlprep.settings import Settings

ALERTS = ROOT / "examples" / "alerts"
sys.path.insert(0, str(ALERTS))
import generate_alerts  # noqa: E402

FAST_GROUP = json.dumps({"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000})


def topic(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def produce(broker, name: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for key, value in messages:
        producer.produce(name, value, key)
    assert producer.flush(30) == 0


def read(broker, name: str, at_least: int, timeout: float = 60) -> list[tuple[bytes | None, bytes | None]]:
    settings = Settings(kafka_bootstrap_servers=broker.bootstrap)
    deadline = time.monotonic() + timeout
    found: list = []
    while time.monotonic() < deadline:
        try:
            found = list(dump_topic(settings, name, wait=2))
        except Exception:
            found = []
        if len(found) >= at_least:
            return found
        time.sleep(0.5)
    pytest.fail(f"{name}: {len(found)} messages after {timeout} s, expected {at_least}")


def count(broker, name: str) -> int:
    """Messages now in ``name`` (0 when the topic does not exist)."""
    try:
        return len(list(dump_topic(Settings(kafka_bootstrap_servers=broker.bootstrap), name, wait=1)))
    except Exception:
        return 0


def start_processor(broker, tmp_path: Path, preprocessing: Path, **env: str) -> ProcessServer:
    port = free_port()
    settings = {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        "KAFKA_CONSUMER_CONFIG": FAST_GROUP,
        "BATCH_TIMEOUT_MS": "200",
        **env,
    }
    return ProcessServer(
        [*MLPREP, "kafka", "-p", str(preprocessing)],
        settings,
        port,
        tmp_path / f"processor-{port}.log",
        health="/ready",
        timeout=60,
    )


def headers_of(broker, name: str) -> list[dict[str, bytes]]:
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        }
    )
    metadata = consumer.list_topics(name, timeout=5).topics[name]
    consumer.assign([TopicPartition(name, p, 0) for p in metadata.partitions])
    out, eof = [], set()
    while len(eof) < len(metadata.partitions):
        message = consumer.poll(5)
        if message is None:
            break
        if message.error():
            eof.add(message.partition())
            continue
        out.append(dict(message.headers() or []))
    consumer.close()
    return out


@pytest.fixture
def alert_preprocessing(tmp_path) -> Path:
    folder = tmp_path / "alerts-pp"
    folder.mkdir()
    (folder / "preprocessing.py").write_text((ALERTS / "alert_preprocessing.py").read_text())
    (folder / "run_info.json").write_text('{"run_id": "abc123", "model_name": "alerts", "version": "3"}')
    return folder


def test_avro_to_json_in_every_framing_with_keys_provenance_and_health(kafka_broker, tmp_path, alert_preprocessing):
    """One topic mixing ZTF-style containers, Fink-style key-schema and schemaless messages (auto framing)."""
    source, target = topic("fink-alert"), topic("preprocessed")
    parsed = generate_alerts.schema()
    alerts = list(generate_alerts.alerts(30, seed=7))
    messages = []
    for index, alert in enumerate(alerts):
        framing = ("container", "key-schema", "schemaless")[index % 3]
        key = (ALERTS / "alert.avsc").read_bytes() if framing == "key-schema" else alert["objectId"].encode()
        messages.append((key, generate_alerts.encode(alert, framing, parsed)))
    produce(kafka_broker, source, messages)
    processor = start_processor(
        kafka_broker,
        tmp_path,
        alert_preprocessing,
        INPUT_TOPIC=source,
        OUTPUT_TOPIC=target,
        INPUT_FORMAT="avro",
        AVRO_SCHEMA_PATH=str(ALERTS / "alert.avsc"),
        SKIP_CUTOUTS="true",
    )
    try:
        out = read(kafka_broker, target, 30)
        records = {json.loads(value)["candid"]: (key, json.loads(value)) for key, value in out}
        assert sorted(records) == sorted(a["candid"] for a in alerts)
        for alert in alerts[::3]:  # container framing: the key is the objectId
            key, record = records[alert["candid"]]
            assert key == alert["objectId"].encode()
            assert record["objectId"] == alert["objectId"] and "cutoutScience" not in record
        headers = headers_of(kafka_broker, target)[0]
        assert headers["mlprep-model-name"] == b"alerts" and headers["mlprep-model-version"] == b"3"
        health = processor.client.get("/health").json()["kafka"]
        assert health["state"] == "running" and health["consumed"] == 30 and health["produced"] == 30
        assert health["partitions"] and health["lag"] is not None
        rest = processor.client.post("/preprocess", json={"data": {"objectId": "no candidate"}})
        assert rest.status_code == 422 and "KeyError" in rest.json()["error"]  # the REST API runs beside it
    finally:
        processor.stop()


def test_json_to_avro_without_cutouts_and_dead_letters(kafka_broker, tmp_path):
    """JSON in, Avro out (the cutouts leave the output schema); bad records go to the dead-letter topic."""
    source, target, dead = topic("alerts-json"), topic("alerts-avro"), topic("dlq")
    folder = write_files(
        tmp_path / "pp",
        {
            "preprocessing.py": """
        def pre_processing(alert):
            if alert.get("poison"):
                raise ValueError("poisoned record")
            return alert
        """
        },
    )
    alerts = list(generate_alerts.alerts(5, seed=3))
    good = []
    for alert in alerts:
        for name in ("cutoutScience", "cutoutTemplate", "cutoutDifference"):
            alert[name] = {"fileName": "x", "stampData": base64.b64encode(alert[name]["stampData"]).decode()}
        good.append((alert["objectId"].encode(), json.dumps(alert).encode()))
    bad = [
        (b"not-json", b"{oops"),
        (b"poison", json.dumps({"poison": True}).encode()),
        (b"wrong-shape", json.dumps({"objectId": "x"}).encode()),
    ]
    produce(kafka_broker, source, good + bad)
    processor = start_processor(
        kafka_broker,
        tmp_path,
        folder,
        INPUT_TOPIC=source,
        OUTPUT_TOPIC=target,
        INPUT_FORMAT="json",
        OUTPUT_FORMAT="avro",
        DEAD_LETTER_TOPIC=dead,
        OUTPUT_AVRO_SCHEMA_PATH=str(ALERTS / "alert.avsc"),
        SKIP_CUTOUTS="true",
    )
    try:
        out = read(kafka_broker, target, 5)
        schema = fastavro.parse_schema(without_cutouts(json.loads((ALERTS / "alert.avsc").read_text())))
        decoded = [fastavro.schemaless_reader(io.BytesIO(value), schema) for _, value in out]
        assert sorted(r["candid"] for r in decoded) == sorted(a["candid"] for a in alerts)
        letters = read(kafka_broker, dead, 3)
        assert sorted(key for key, _ in letters) == [b"not-json", b"poison", b"wrong-shape"]
        stages = {h["mlprep-error-stage"]: h for h in headers_of(kafka_broker, dead)}
        assert set(stages) == {b"decode", b"preprocess", b"encode"}
        assert b"poisoned record" in stages[b"preprocess"]["mlprep-error"]
        assert stages[b"decode"]["mlprep-source-topic"] == source.encode()
        assert processor.client.get("/health").json()["kafka"]["dead_lettered"] == 3
    finally:
        processor.stop()


def slow_identity(tmp_path: Path) -> Path:
    return write_files(
        tmp_path / "slow",
        {
            "preprocessing.py": """
        import time

        def pre_processing(record):
            time.sleep(0.002)
            return record
        """
        },
    )


def test_kill_9_mid_stream_then_restart_loses_nothing(kafka_broker, tmp_path):
    source, target = topic("k9-in"), topic("k9-out")
    keys = [f"k{i}".encode() for i in range(3000)]
    produce(kafka_broker, source, [(k, json.dumps({"k": k.decode()}).encode()) for k in keys])
    env = {"INPUT_TOPIC": source, "OUTPUT_TOPIC": target, "BATCH_SIZE": "100", "CONSUMER_GROUP_ID": source}
    first = start_processor(kafka_broker, tmp_path, slow_identity(tmp_path), **env)
    deadline = time.monotonic() + 60
    while first.client.get("/health").json()["kafka"]["produced"] < 300:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    first.stop(kill=True)
    second = start_processor(kafka_broker, tmp_path, slow_identity(tmp_path), **env)
    try:
        out = read(kafka_broker, target, 3000, timeout=120)
        assert {key for key, _ in out} == set(keys)  # at least once: every key, duplicates allowed
    finally:
        second.stop()


def test_two_processors_in_one_group_share_partitions(kafka_broker, tmp_path):
    source, target = kafka_broker.create_topic(topic("shared-in"), 4), topic("shared-out")
    env = {"INPUT_TOPIC": source, "OUTPUT_TOPIC": target, "CONSUMER_GROUP_ID": source, "BATCH_SIZE": "50"}
    folder = slow_identity(tmp_path)
    one = start_processor(kafka_broker, tmp_path, folder, **env)
    two = start_processor(kafka_broker, tmp_path, folder, **env)
    try:
        deadline = time.monotonic() + 60
        while True:
            parts = [set(p.client.get("/health").json()["kafka"]["partitions"]) for p in (one, two)]
            if all(parts) and not parts[0] & parts[1] and len(parts[0] | parts[1]) == 4:
                break
            assert time.monotonic() < deadline, f"partitions never split: {parts}"
            time.sleep(0.5)
        produce(kafka_broker, source, [(f"s{i}".encode(), json.dumps({"i": i}).encode()) for i in range(400)])
        out = read(kafka_broker, target, 400)
        assert {json.loads(v)["i"] for _, v in out} == set(range(400))
        consumed = [p.client.get("/health").json()["kafka"]["consumed"] for p in (one, two)]
        assert all(c > 0 for c in consumed) and sum(consumed) >= 400
    finally:
        one.stop()
        two.stop()


def test_sigterm_drains_commits_and_exits_0(kafka_broker, tmp_path):
    source, target = topic("term-in"), topic("term-out")
    produce(kafka_broker, source, [(f"t{i}".encode(), json.dumps({"i": i}).encode()) for i in range(200)])
    processor = start_processor(
        kafka_broker,
        tmp_path,
        slow_identity(tmp_path),
        INPUT_TOPIC=source,
        OUTPUT_TOPIC=target,
        CONSUMER_GROUP_ID=source,
    )
    read(kafka_broker, target, 200)
    processor.process.send_signal(signal.SIGTERM)
    assert processor.process.wait(timeout=30) == 0
    consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": source})
    metadata = consumer.list_topics(source, timeout=5).topics[source]
    committed = consumer.committed([TopicPartition(source, p) for p in metadata.partitions], timeout=10)
    consumer.close()
    assert sum(max(tp.offset, 0) for tp in committed) > 0  # offsets were committed before exiting


def test_confluent_wire_format_with_a_schema_registry():
    """Magic byte 0 + schema id, the schema fetched from SCHEMA_REGISTRY_URL over HTTP."""
    schema = {"type": "record", "name": "R", "fields": [{"name": "n", "type": "long"}]}

    class Registry(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"schema": json.dumps(schema)}).encode() if self.path == "/schemas/ids/7" else b"{}"
            self.send_response(200 if self.path == "/schemas/ids/7" else 404)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Registry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        buffer = io.BytesIO()
        fastavro.schemaless_writer(buffer, fastavro.parse_schema(schema), {"n": 42})
        decoder = MessageDecoder("avro", "auto", registry_url=f"http://127.0.0.1:{server.server_port}")
        assert decoder.decode(b"\x00" + (7).to_bytes(4, "big") + buffer.getvalue()) == [{"n": 42}]
        from mlprep.kafka.framing import DecodeError

        with pytest.raises(DecodeError, match="schema 8 not found"):
            decoder.decode(b"\x00" + (8).to_bytes(4, "big") + buffer.getvalue())
    finally:
        server.shutdown()


def test_stdout_to_kafka_mode(kafka_broker, make_preprocessing):
    folder = make_preprocessing("def pre_processing(d):\n    return {**d, 'done': True}\n")
    env = {
        **os.environ,
        "KAFKA_ENABLED": "true",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
        "MODEL_NAME": "stdout-model",
        "MODEL_VERSION": "v9",
        "KAFKA_TOPIC_SUFFIX": uuid.uuid4().hex[:6],
    }
    result = subprocess.run(
        [*MLPREP, "run", "-p", str(folder)],
        input=b'{"test": "data"}\n{"n": 2}\n',
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    name = f"stdout-model-v9-{env['KAFKA_TOPIC_SUFFIX']}"
    assert f"(to Kafka topic {name})" in result.stderr.decode()
    assert result.stdout == b""
    assert sorted(json.loads(v)["done"] for _, v in read(kafka_broker, name, 2)) == [True, True]


def test_compose_files_parse(tmp_path):
    import shutil

    from infra import _apt_install

    if shutil.which("docker-compose") is None:
        _apt_install("docker-compose")
    for name in ("docker-compose.kafka.yml", "docker-compose.yml"):
        result = subprocess.run(
            ["docker-compose", "-f", str(ROOT / name), "config"], capture_output=True, text=True, cwd=ROOT, check=False
        )
        assert result.returncode == 0, result.stderr
        assert "kafka" in result.stdout
    import yaml

    whole = yaml.safe_load(
        subprocess.run(
            ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "--profile", "streaming", "config"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        ).stdout
    )
    streaming = {name for name, service in whole["services"].items() if "streaming" in service.get("profiles", [])}
    assert streaming == {"kafka", "preprocessing", "model", "model-bridge"}


def start_model_server(mlflow_server, port: int, log: Path) -> subprocess.Popen:
    return services.start_model_server("models:/testmodel/1", port, mlflow_server.env(), log)


def test_bridge_to_a_real_model_server_that_goes_down_and_comes_back(
    kafka_broker, mlflow_server, example_run, tmp_path
):
    source, target, dead = topic("features"), topic("predictions"), topic("bridge-dlq")
    port = free_port()
    model = start_model_server(mlflow_server, port, tmp_path / "model.log")
    services.wait_http(f"http://127.0.0.1:{port}/ping", process=model)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
        "INPUT_TOPIC": source,
        "OUTPUT_TOPIC": target,
        "DEAD_LETTER_TOPIC": dead,
        "API_URL": f"http://127.0.0.1:{port}",
        "BATCH_SIZE": "50",
        "BATCH_TIMEOUT_MS": "200",
        "KAFKA_CONSUMER_CONFIG": FAST_GROUP,
        "CONSUMER_GROUP_ID": source,
        "PASSTHROUGH_FIELDS": '["customer_id"]',
        "BRIDGE_MAX_RETRIES": "12",
        "BRIDGE_HEALTH_PORT": str(health_port := free_port()),
        "API_HOST": "127.0.0.1",
    }
    bridge = subprocess.Popen(
        [*MLPREP, "bridge"], env=env, stdout=(tmp_path / "bridge.log").open("wb"), stderr=subprocess.STDOUT
    )

    def rows(start: int, count: int) -> list[tuple[bytes, bytes]]:
        return [
            (
                f"c{i}".encode(),
                json.dumps(
                    {
                        "customer_id": f"c{i}",
                        "tenure_months": 70.0 if i % 2 else 1.0,
                        "monthly_charges": 20.0 if i % 2 else 115.0,
                        "support_calls": 0.0 if i % 2 else 6.0,
                    }
                ).encode(),
            )
            for i in range(start, start + count)
        ]

    try:
        produce(kafka_broker, source, rows(0, 120))
        first = read(kafka_broker, target, 120)
        by_key = {key: json.loads(value) for key, value in first}
        probes = f"http://127.0.0.1:{health_port}"
        assert httpx.get(f"{probes}/ready").status_code == 200  # partitions assigned: Kubernetes' readiness
        assert httpx.get(f"{probes}/health").json()["state"] == "running"
        assert by_key[b"c0"] == {"customer_id": "c0", "prediction": 1}
        assert by_key[b"c1"] == {"customer_id": "c1", "prediction": 0}
        os.killpg(model.pid, signal.SIGTERM)  # the model server goes down...
        model.wait(timeout=30)
        produce(kafka_broker, source, rows(120, 80))
        time.sleep(3)
        model = start_model_server(mlflow_server, port, tmp_path / "model.log")  # ... and comes back
        out = read(kafka_broker, target, 200, timeout=180)
        assert {key for key, _ in out} == {f"c{i}".encode() for i in range(200)}
        assert "retry" in (tmp_path / "bridge.log").read_text()
        assert count(kafka_broker, dead) == 0  # nothing was dead-lettered
        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(timeout=30) == 0
    finally:
        bridge.kill()
        os.killpg(model.pid, signal.SIGKILL)


def test_container_stdout_to_kafka_with_the_shell_scripts(kafka_broker, built_image):
    """echo ... | ./run_with_kafka.sh IMAGE, then ./check_kafka_topic.sh TOPIC (the original Mode Kafka)."""
    env = {**os.environ, "DOCKER_NETWORK": "host", "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap}
    sent = subprocess.run(
        [str(ROOT / "run_with_kafka.sh"), built_image],
        input=b'{"test": "data"}\n',
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert sent.returncode == 0, sent.stderr
    assert b"(to Kafka topic testmodel-v1-cleaned)" in sent.stderr
    shown = subprocess.run(
        [str(ROOT / "check_kafka_topic.sh"), "testmodel-v1-cleaned"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert {"test": "data", "preprocessed": True} in [json.loads(line) for line in shown.stdout.splitlines()]


def test_container_runs_the_stream_processor_and_its_api(kafka_broker, built_image):
    source, target = topic("container-in"), topic("container-out")
    port = free_port()
    settings = {
        "KAFKA_ENABLED": "true",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
        "INPUT_TOPIC": source,
        "OUTPUT_TOPIC": target,
        "API_PORT": str(port),
        "KAFKA_CONSUMER_CONFIG": FAST_GROUP,
    }
    options = [item for key, value in settings.items() for item in ("-e", f"{key}={value}")]
    started = subprocess.run(
        ["docker", "run", "-d", "--network", "host", *options, built_image], capture_output=True, text=True, check=True
    )
    container = started.stdout.strip()
    try:
        produce(
            kafka_broker, source, [(f"c{i}".encode(), json.dumps({"Contract": "One Year"}).encode()) for i in range(20)]
        )
        out = read(kafka_broker, target, 20)
        assert json.loads(out[0][1]) == {"contract": "one_year", "preprocessed": True}
        import httpx

        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()
        assert health["kafka"]["state"] == "running" and health["run_id"]
        subprocess.run(["docker", "stop", "-t", "30", container], capture_output=True, check=True)
        state = subprocess.run(
            ["docker", "inspect", "--format", "{{.State.ExitCode}}", container],
            capture_output=True,
            text=True,
            check=True,
        )
        assert state.stdout.strip() == "0"  # SIGTERM drained the processor
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, check=False)


def test_bridge_image_builds_and_runs(base_image):
    result = subprocess.run(
        [
            "docker",
            "build",
            "--network",
            "host",
            "-f",
            str(ROOT / "docker" / "Dockerfile.bridge"),
            "--build-arg",
            f"BASE_IMAGE={base_image}",
            "-t",
            "kafka-bridge:test",
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    missing = subprocess.run(
        ["docker", "run", "--rm", "--network", "host", "kafka-bridge:test"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 2 and "needs INPUT_TOPIC and OUTPUT_TOPIC" in missing.stderr
