"""The stream processor, the stdout->Kafka mode and the bridge, against a real broker and processes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
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


def start_processor(
    broker, tmp_path: Path, preprocessing: Path, options: list[str] | None = None, timeout: float = 60, **env: str
) -> ProcessServer:
    """``mlprep kafka -p preprocessing [options]`` with ``env``, once ready (partitions assigned)."""
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
        [*MLPREP, "kafka", "-p", str(preprocessing), *(options or [])],
        settings,
        port,
        tmp_path / f"processor-{port}.log",
        health="/ready",
        timeout=timeout,
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
        assert set(stages) == {b"decode", b"preprocess", b"serialize"}
        assert b"poisoned record" in stages[b"preprocess"]["mlprep-error"]
        assert stages[b"decode"]["mlprep-source-topic"] == source.encode()
        assert processor.client.get("/health").json()["kafka"]["dead_lettered"] == 3
    finally:
        processor.stop()


def health_when(processor: ProcessServer, done, timeout: float = 60) -> dict:
    """The processor's /health "kafka" part once ``done(it)`` holds."""
    deadline = time.monotonic() + timeout
    while True:
        kafka = processor.client.get("/health").json()["kafka"]
        if done(kafka):
            return kafka
        assert time.monotonic() < deadline, f"/health never got there: {kafka}"
        time.sleep(0.2)


def test_messages_that_hold_no_record_are_dead_lettered_and_every_message_is_counted(kafka_broker, tmp_path):
    """A record is a JSON object; a message is one object or an array of objects. Anything else is
    dead-lettered with its reason; a message whose records all return None is counted as dropped."""
    source, target, dead = topic("records-in"), topic("records-out"), topic("records-dlq")
    folder = write_files(
        tmp_path / "pp",
        {"preprocessing.py": "def pre_processing(d):\n    return None if d.get('drop') else {**d, 'seen': True}\n"},
    )
    messages = {
        b"empty-array": b"[]",
        b"number": b"3",
        b"string": b'"x"',
        b"mixed": b'[{"a": 1}, 3]',
        b"object": b"{}",
        b"array": b'[{"a": 1}, {"a": 2}]',
        b"drop": b'{"drop": true}',
    }
    produce(kafka_broker, source, list(messages.items()))
    processor = start_processor(
        kafka_broker, tmp_path, folder, INPUT_TOPIC=source, OUTPUT_TOPIC=target, DEAD_LETTER_TOPIC=dead
    )
    try:
        letters = {key: value for key, value in read(kafka_broker, dead, 4)}
        assert letters == {key: messages[key] for key in (b"empty-array", b"number", b"string", b"mixed")}
        reasons = {h["mlprep-error"].decode() for h in headers_of(kafka_broker, dead)}
        assert {h["mlprep-error-stage"] for h in headers_of(kafka_broker, dead)} == {b"decode"}
        assert any("holds no record" in reason for reason in reasons)
        assert any("a number (3), not a record" in reason for reason in reasons)
        assert any("a string, not a record" in reason for reason in reasons)
        assert any("item 1 of the message is a number" in reason for reason in reasons)
        out = read(kafka_broker, target, 3)
        assert sorted((key, value) for key, value in out) == [
            (b"array", b'{"a":1,"seen":true}'),
            (b"array", b'{"a":2,"seen":true}'),
            (b"object", b'{"seen":true}'),
        ]
        kafka = health_when(processor, lambda k: k["consumed"] == len(messages))
        assert (kafka["out"], kafka["dropped"], kafka["dead_lettered"], kafka["produced"]) == (2, 1, 4, 3)
        assert kafka["out"] + kafka["dropped"] + kafka["dead_lettered"] == kafka["consumed"]
    finally:
        processor.stop()


def test_poison_messages_are_dead_lettered_and_the_stream_goes_on(kafka_broker, tmp_path):
    """A 999 901-byte message that is not JSON: its dead letter (headers added) would pass the producer's
    message.max.bytes, so it keeps its headers and the start of its value, and says so. A record whose
    preprocessing calls exit(), one whose output is too large for Kafka: dead-lettered, not fatal."""
    source, target, dead = topic("poison-in"), topic("poison-out"), topic("poison-dlq")
    folder = write_files(
        tmp_path / "pp",
        {
            "preprocessing.py": """
        import sys

        def pre_processing(record):
            if record.get("exit"):
                sys.exit("exit called in pre_processing")
            return {"blob": "x" * record["grow"]} if "grow" in record else record
        """
        },
    )
    poison = b"{" + b"x" * 999_900
    produce(kafka_broker, source, [(b"poison", poison)])
    produce(kafka_broker, source, [(b"exit", b'{"exit": true}'), (b"grow", b'{"grow": 1500000}')])
    produce(kafka_broker, source, [(f"after{i}".encode(), json.dumps({"i": i}).encode()) for i in range(5)])
    processor = start_processor(
        kafka_broker, tmp_path, folder, INPUT_TOPIC=source, OUTPUT_TOPIC=target, DEAD_LETTER_TOPIC=dead
    )
    try:
        out = read(kafka_broker, target, 5)
        assert sorted(key for key, _ in out) == [f"after{i}".encode() for i in range(5)]
        letters = dict(read(kafka_broker, dead, 3))
        assert sorted(letters) == [b"exit", b"grow", b"poison"]
        assert 0 < len(letters[b"poison"]) < len(poison) and poison.startswith(letters[b"poison"])
        headers = {h["mlprep-error-stage"]: h for h in headers_of(kafka_broker, dead)}
        assert headers[b"decode"]["mlprep-truncated"] == b"999901"
        assert b"invalid JSON" in headers[b"decode"]["mlprep-error"]
        assert headers[b"decode"]["mlprep-source-topic"] == source.encode()
        assert b"SystemExit: exit called in pre_processing" in headers[b"preprocess"]["mlprep-error"]
        assert b"larger than the producer's message.max.bytes" in headers[b"produce"]["mlprep-error"]
        assert "mlprep-truncated" not in headers[b"preprocess"] and "mlprep-truncated" not in headers[b"produce"]
        kafka = health_when(processor, lambda k: k["consumed"] == 8)
        assert (kafka["state"], kafka["out"], kafka["dead_lettered"], kafka["truncated"]) == ("running", 5, 3, 1)
        assert processor.client.get("/health").status_code == 200
    finally:
        processor.stop()


def test_an_error_the_processor_cannot_handle_fails_health_and_exits_non_zero(kafka_broker, tmp_path):
    """Nothing can be produced (the producer's broker is gone): the processor waits (/health says for
    what, /ready answers 503), then after RETRY_TIMEOUT_S /health stops answering 200 "ok" and the
    process exits 1 for its supervisor to restart it, the batch uncommitted."""
    source = topic("fatal-in")
    produce(kafka_broker, source, [(b"bad", b"{oops")])
    unreachable = json.dumps({"bootstrap.servers": f"127.0.0.1:{free_port()}", "message.timeout.ms": 1000})
    processor = start_processor(
        kafka_broker,
        tmp_path,
        slow_identity(tmp_path),
        INPUT_TOPIC=source,
        OUTPUT_TOPIC=topic("fatal-out"),
        CONSUMER_GROUP_ID=source,
        KAFKA_PRODUCER_CONFIG=unreachable,
        RETRY_TIMEOUT_S="4",
    )
    waits, readiness = [], set()
    try:
        deadline = time.monotonic() + 120
        while processor.process.poll() is None:
            assert time.monotonic() < deadline, "the processor kept running after a fatal error"
            try:
                answer = processor.client.get("/health")
            except httpx.TransportError:  # shutting down
                continue
            if answer.status_code == 200:
                assert answer.json()["kafka"]["state"] != "failed"
                if waiting := answer.json()["kafka"]["waiting"]:
                    waits.append(waiting)
                    with contextlib.suppress(httpx.TransportError):
                        readiness.add(processor.client.get("/ready").status_code)
            else:
                assert answer.status_code == 503
                assert "could not be written to Kafka" in answer.json()["error"]
            time.sleep(0.05)
        assert processor.process.returncode == 1
        assert "could not be written to Kafka" in processor.log.read_text()
        assert waits and waits[-1]["for"] == "Kafka" and waits[-1]["since"] and "not acknowledged" in waits[-1]["error"]
        assert readiness == {503}
        consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": source})
        committed = consumer.committed([TopicPartition(source, 0)], timeout=10)
        consumer.close()
        assert committed[0].offset < 1  # the message will be read again
    finally:
        processor.stop()


def test_a_processor_whose_consumer_cannot_start_exits_1_with_the_reason(kafka_broker, tmp_path):
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
        "INPUT_TOPIC": topic("bad-config-in"),
        "OUTPUT_TOPIC": topic("bad-config-out"),
        "API_HOST": "127.0.0.1",
        "API_PORT": str(free_port()),
        "KAFKA_CONSUMER_CONFIG": '{"no.such.property": 1}',
    }
    result = subprocess.run(
        [*MLPREP, "kafka", "-p", str(slow_identity(tmp_path))], capture_output=True, env=env, timeout=60, check=False
    )
    assert result.returncode == 1
    assert b"processor: stopped by an error it cannot handle" in result.stderr
    assert b"No such configuration property" in result.stderr


def test_health_answers_503_with_the_error_once_the_processor_failed(kafka_broker, tmp_path, make_preprocessing):
    """The REST API of the processor, its loop failed for real (nothing can be produced past
    RETRY_TIMEOUT_S)."""
    from mlprep.kafka.processor import build_processor
    from mlprep.rest.app import create_app
    from mlprep.runtime.core import Preprocessor

    source = topic("failing-in")
    produce(kafka_broker, source, [(b"bad", b"{oops")])
    settings = Settings(
        kafka_bootstrap_servers=kafka_broker.bootstrap,
        input_topic=source,
        output_topic=topic("failing-out"),
        kafka_producer_config={"bootstrap.servers": f"127.0.0.1:{free_port()}", "message.timeout.ms": 500},
        kafka_consumer_config=json.loads(FAST_GROUP),
        retry_timeout_s=2,  # Kafka down: waited for that long, then failed
    )
    pre = Preprocessor.load(make_preprocessing("def pre_processing(d):\n    return d\n"))
    loop = build_processor(settings, pre)
    app = create_app(settings, pre, components={"kafka": loop.health})

    def get(path: str) -> httpx.Response:
        async def call() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
                return await client.get(path)

        return asyncio.run(call())

    assert get("/health").status_code == 200
    with pytest.raises(Exception, match="could not be written to Kafka"):
        loop.run()
    for path in ("/health", "/ready"):
        answer = get(path)
        assert answer.status_code == 503
        assert answer.json()["status"] == "failed" and "could not be written to Kafka" in answer.json()["error"]


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


def run_to_kafka(kafka_broker, folder, model: str, stdin: bytes) -> tuple[subprocess.CompletedProcess[bytes], str]:
    """``mlprep run`` with KAFKA_ENABLED and no INPUT_TOPIC (stdout to Kafka); the result and the topic."""
    suffix = uuid.uuid4().hex[:6]
    env = {
        **os.environ,
        "KAFKA_ENABLED": "true",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
        "MODEL_NAME": model,
        "MODEL_VERSION": "v9",
        "KAFKA_TOPIC_SUFFIX": suffix,
    }
    result = subprocess.run(
        [*MLPREP, "run", "-p", str(folder)], input=stdin, capture_output=True, env=env, timeout=60, check=False
    )
    return result, f"{model}-v9-{suffix}"


def test_stdout_to_kafka_mode(kafka_broker, make_preprocessing):
    folder = make_preprocessing("def pre_processing(d):\n    return {**d, 'done': True}\n")
    result, name = run_to_kafka(kafka_broker, folder, "stdout-model", b'{"test": "data"}\n{"n": 2}\n')
    assert result.returncode == 0, result.stderr
    assert f"(to Kafka topic {name})" in result.stderr.decode()
    assert result.stdout == b""
    assert sorted(json.loads(v)["done"] for _, v in read(kafka_broker, name, 2)) == [True, True]


def test_stdout_to_kafka_mode_says_which_record_kafka_refuses(kafka_broker, make_preprocessing):
    """An output record larger than message.max.bytes: a clear error, the summary and status 1, no traceback."""
    folder = make_preprocessing("def pre_processing(d):\n    return {'blob': 'x' * d['size']}\n")
    result, name = run_to_kafka(kafka_broker, folder, "big-model", b'{"size": 10}\n{"size": 2000000}\n')
    assert result.returncode == 1, result.stderr
    stderr = result.stderr.decode()
    assert f"output record 2 (2000011 bytes) cannot be sent to Kafka topic {name}" in stderr
    assert stderr.splitlines()[-1].startswith("mlprep: ") and " in, " in stderr.splitlines()[-1]
    assert "message.max.bytes" in stderr and "Traceback" not in stderr


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
        "API_HOST": "127.0.0.1",
        "BRIDGE_PORT": str(health_port := free_port()),
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
        assert httpx.get(f"{probes}/health").json()["bridge"]["state"] == "running"
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


def test_bridge_reports_unreadable_and_miscounted_answers_without_leaking_the_url_password(kafka_broker, tmp_path):
    """A model server behind a proxy answers 200 with an HTML page, then 200 with no predictions: the
    batches are dead-lettered with the model-server error, the bridge keeps running, and the password
    of API_URL is in no header and no log line."""
    source, target, dead = topic("html-in"), topic("html-out"), topic("html-dlq")
    answers = [b"<html><body>502 Bad Gateway</body></html>"]

    class Model(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "text/html" if answers[-1].startswith(b"<") else "application/json")
            self.end_headers()
            self.wfile.write(answers[-1])

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Model)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
        "INPUT_TOPIC": source,
        "OUTPUT_TOPIC": target,
        "DEAD_LETTER_TOPIC": dead,
        "API_URL": f"http://bridge-user:s3cret-pass@127.0.0.1:{server.server_port}",
        "BATCH_TIMEOUT_MS": "200",
        "KAFKA_CONSUMER_CONFIG": FAST_GROUP,
        "CONSUMER_GROUP_ID": source,
        "BRIDGE_MAX_RETRIES": "1",
        "BRIDGE_RETRY_DELAY_MS": "10",
        "API_HOST": "127.0.0.1",
        "BRIDGE_PORT": str(free_port()),
    }
    log = tmp_path / "bridge.log"
    bridge = subprocess.Popen([*MLPREP, "bridge"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        produce(kafka_broker, source, [(f"h{i}".encode(), json.dumps({"i": i}).encode()) for i in range(3)])
        assert sorted(key for key, _ in read(kafka_broker, dead, 3)) == [b"h0", b"h1", b"h2"], log.read_text()
        answers.append(b'{"predictions": []}')
        produce(kafka_broker, source, [(f"m{i}".encode(), json.dumps({"i": i}).encode()) for i in range(2)])
        read(kafka_broker, dead, 5)
        assert bridge.poll() is None, log.read_text()[-3000:]
        headers = headers_of(kafka_broker, dead)
        assert {h["mlprep-error-stage"] for h in headers} == {b"model"}
        errors = [h["mlprep-error"].decode() for h in headers]
        assert sum("unreadable body" in e and "502 Bad Gateway" in e for e in errors) == 3
        assert sum("answered 0 predictions for" in e for e in errors) == 2
        assert all(f"http://***@127.0.0.1:{server.server_port}/invocations" in e for e in errors)
        assert count(kafka_broker, target) == 0
        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(timeout=30) == 0
        text = log.read_text()
        assert "retry 1/1" in text and "http://***@" in text
        assert "s3cret-pass" not in text and not any(b"s3cret-pass" in b"".join(h.values()) for h in headers)
    finally:
        bridge.kill()
        server.shutdown()


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
    check = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .Config.Healthcheck.Test}}", "kafka-bridge:test"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(check.stdout)[-1] == "mlprep.healthcheck"


class LocalModel:
    """A model server on loopback: predicts ``2 * i``; answers 503 while ``failing``, refuses (400) a
    batch holding a record with ``"refuse": true``; ``down()`` closes its port, ``up()`` reopens it."""

    def __init__(self) -> None:
        self.failing, self.calls, self.port = False, 0, free_port()
        self.server: HTTPServer | None = None
        self.up()

    def up(self) -> None:
        model = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                records = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["dataframe_records"]
                model.calls += 1
                if model.failing:
                    status, body = 503, {"error": "overloaded"}
                elif any(record.get("refuse") for record in records):
                    status, body = 400, {"error_code": "BAD_REQUEST", "message": "refused record"}
                else:
                    status, body = 200, {"predictions": [2 * record["i"] for record in records]}
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def start_bridge(broker, tmp_path: Path, model: LocalModel, **env: str) -> tuple[subprocess.Popen, Path, httpx.Client]:
    """The bridge, and a client of its /health, /ready and /metrics."""
    log = tmp_path / f"bridge-{uuid.uuid4().hex[:6]}.log"
    port = free_port()
    settings = {
        **os.environ,
        "API_HOST": "127.0.0.1",
        "BRIDGE_PORT": str(port),
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "API_URL": f"http://127.0.0.1:{model.port}",
        "BATCH_SIZE": "100",
        "BATCH_TIMEOUT_MS": "200",
        "PASSTHROUGH_FIELDS": '["i"]',
        **env,
    }
    bridge = subprocess.Popen([*MLPREP, "bridge"], env=settings, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return bridge, log, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)


def metric(client: httpx.Client, name: str, **labels: str) -> float | None:
    """One sample of a /metrics (None when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def eventually(check, timeout: float = 30):
    """``check()``'s value once truthy."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.3)
    return value


def numbered(start: int, count: int, refuse: set[int] = frozenset()) -> list[tuple[bytes, bytes]]:
    return [
        (f"k{i}".encode(), json.dumps({"i": i, **({"refuse": True} if i in refuse else {})}).encode())
        for i in range(start, start + count)
    ]


def test_bridge_waits_out_a_model_server_outage_without_dead_letters_or_rebalance(kafka_broker, tmp_path):
    """20 000 records; the model server answers 503, then is unreachable, for 60 s in the middle. The
    bridge pauses and keeps polling: it stays in its group although the outage is far longer than
    max.poll.interval.ms (7 s here), then every prediction arrives and nothing is dead-lettered."""
    source, target, dead = topic("outage-in"), topic("outage-out"), topic("outage-dlq")
    model = LocalModel()
    group = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000, "max.poll.interval.ms": 7000}
    bridge, log, client = start_bridge(
        kafka_broker,
        tmp_path,
        model,
        INPUT_TOPIC=source,
        OUTPUT_TOPIC=target,
        DEAD_LETTER_TOPIC=dead,
        CONSUMER_GROUP_ID=source,
        KAFKA_CONSUMER_CONFIG=json.dumps(group),
        BRIDGE_RETRY_DELAY_MS="100",
        RETRY_MAX_DELAY_MS="1000",
    )
    try:
        produce(kafka_broker, source, numbered(0, 10_000))
        read(kafka_broker, target, 10_000)
        model.failing = True  # 503 first...
        produce(kafka_broker, source, numbered(10_000, 10_000))
        waiting = eventually(lambda: client.get("/health").json()["bridge"]["waiting"])
        assert waiting["for"] == "the model server" and "503" in waiting["error"] and waiting["since"]
        assert client.get("/ready").status_code == 503
        time.sleep(10)
        model.down()  # ... then connection refused
        time.sleep(50)
        model.failing = False
        model.up()
        out = read(kafka_broker, target, 20_000, timeout=120)
        predictions = {key: json.loads(value) for key, value in out}
        assert predictions == {f"k{i}".encode(): {"i": i, "prediction": 2 * i} for i in range(20_000)}
        assert count(kafka_broker, dead) == 0
        text = log.read_text()
        assert "waiting for the model server" in text and "partitions resumed" in text
        assert text.count("partitions assigned") == 1, text[-3000:]  # no rebalance
        assert eventually(lambda: client.get("/ready").status_code == 200)
        assert metric(client, "mlprep_kafka_rebalances_total") == 1
        assert metric(client, "mlprep_kafka_retries_total") >= 3
        assert metric(client, "mlprep_kafka_backpressure_seconds_total") >= 55
        assert bridge.poll() is None
        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(timeout=30) == 0
    finally:
        bridge.kill()
        model.down()


def test_bridge_dead_letters_only_the_records_the_model_refuses(kafka_broker, tmp_path):
    """1 000 records, 3 of which the model server refuses (400 for any batch holding one): the refused
    batches are bisected, so 997 predictions arrive and 3 dead letters keep their key and bytes."""
    source, target, dead = topic("refuse-in"), topic("refuse-out"), topic("refuse-dlq")
    model = LocalModel()
    refused = {17, 500, 999}
    records = numbered(0, 1000, refused)
    produce(kafka_broker, source, records)
    bridge, log, client = start_bridge(
        kafka_broker,
        tmp_path,
        model,
        INPUT_TOPIC=source,
        OUTPUT_TOPIC=target,
        DEAD_LETTER_TOPIC=dead,
        CONSUMER_GROUP_ID=source,
        KAFKA_CONSUMER_CONFIG=FAST_GROUP,
    )
    try:
        letters = read(kafka_broker, dead, 3)
        assert sorted(letters) == sorted(records[i] for i in refused)
        headers = headers_of(kafka_broker, dead)
        assert {h["mlprep-error-stage"] for h in headers} == {b"model"}
        assert all(b"refused the records (400)" in h["mlprep-error"] for h in headers)
        out = read(kafka_broker, target, 997)
        assert bridge.poll() is None, log.read_text()[-3000:]
        assert {key for key, _ in out} == {f"k{i}".encode() for i in range(1000) if i not in refused}
        assert len(out) == 997 and count(kafka_broker, dead) == 3
        # /metrics counts what the test sent, and the lag goes to 0
        assert eventually(lambda: metric(client, "mlprep_kafka_records_consumed_total") == 1000)
        assert metric(client, "mlprep_kafka_records_produced_total") == 997
        assert metric(client, "mlprep_kafka_dead_letters_total", stage="model") == 3
        assert metric(client, "mlprep_kafka_batch_size_count") >= 10
        assert metric(client, "mlprep_kafka_model_request_duration_seconds_count", outcome="refused") >= 3
        assert eventually(lambda: metric(client, "mlprep_kafka_consumer_lag", topic=source, partition="0") == 0)
        assert client.get("/health").json()["bridge"]["lag"] == 0
        exposed = client.get("/metrics").text  # the Grafana dashboard asks only for what is exposed
        dashboard = (ROOT / "deploy" / "grafana" / "mlprep-kafka.json").read_text()
        assert all(name in exposed for name in set(re.findall(r"mlprep_kafka_\w+", dashboard)))
    finally:
        bridge.kill()
        model.down()


def test_a_processor_with_default_group_settings_is_consuming_within_seconds(kafka_broker, tmp_path):
    """No KAFKA_CONSUMER_CONFIG: the default group timings let it join and be ready within 15 s (with
    librdkafka's own 45 s session timeout the join alone takes ~25 s on the embedded broker)."""
    source, target = topic("fast-in"), topic("fast-out")
    produce(kafka_broker, source, [(b"a", b'{"a": 1}')])
    folder = write_files(tmp_path / "pp", {"preprocessing.py": "def pre_processing(d):\n    return d\n"})
    port = free_port()
    processor = ProcessServer(
        [*MLPREP, "kafka", "-p", str(folder)],
        {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
            "INPUT_TOPIC": source,
            "OUTPUT_TOPIC": target,
            "API_HOST": "127.0.0.1",
            "API_PORT": str(port),
        },
        port,
        tmp_path / "fast.log",
        health="/ready",
        timeout=15,
    )
    try:
        assert read(kafka_broker, target, 1) == [(b"a", b'{"a":1}')]
    finally:
        processor.stop()


def test_dead_letters_can_be_inspected_and_replayed_once_fixed_without_replay_loops(kafka_broker, tmp_path):
    """Three records fail; the dead letters keep key, bytes, source and run id. Once two are fixed,
    ``mlprep dlq replay`` brings them through; the one that fails again is dead-lettered marked as a
    replay, and a later replay does not send it round again."""
    source, target, dead = topic("replay-in"), topic("replay-out"), topic("replay-dlq")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2, 3]")
    folder = write_files(
        tmp_path / "pp",
        {
            "preprocessing.py": f"""
        import json

        def pre_processing(record):
            if record["n"] in json.load(open({str(bad)!r})):
                raise ValueError(f"record {{record['n']}} is broken")
            return record
        """,
            "run_info.json": '{"run_id": "run42", "model_name": "m", "version": "1"}',
        },
    )
    records = [(f"r{n}".encode(), json.dumps({"n": n}).encode()) for n in range(10)]
    produce(kafka_broker, source, records)
    processor = start_processor(
        kafka_broker, tmp_path, folder, INPUT_TOPIC=source, OUTPUT_TOPIC=target, DEAD_LETTER_TOPIC=dead
    )
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_broker.bootstrap}

    def mlprep(*args: str) -> str:
        result = subprocess.run([*MLPREP, *args], env=env, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout

    try:
        assert sorted(read(kafka_broker, dead, 3)) == [records[1], records[2], records[3]]
        read(kafka_broker, target, 7)
        headers = headers_of(kafka_broker, dead)
        assert {h["mlprep-run-id"] for h in headers} == {b"run42"}
        assert {h["mlprep-source-topic"] for h in headers} == {source.encode()}
        assert all(h["mlprep-error-time"] and h["mlprep-source-offset"] for h in headers)
        summary = mlprep("dlq", "inspect", dead)
        assert "3 dead letters" in summary and "stage preprocess: 3" in summary
        assert "ValueError: record 2 is broken" in summary
        bad.write_text("[3]")  # two are fixed
        before_replay = datetime.now(UTC).isoformat()
        assert "replayed 3 to" in mlprep("dlq", "replay", dead, "--to", source, "--stage", "preprocess")
        out = read(kafka_broker, target, 9)
        assert sorted(key for key, _ in out) == sorted(key for key, _ in records if key != b"r3")
        letters = read(kafka_broker, dead, 4)
        assert sorted(key for key, _ in letters) == [b"r1", b"r2", b"r3", b"r3"]
        again = mlprep("dlq", "replay", dead, "--to", source, "--since", before_replay)
        assert "replayed 0 to" in again and "skipped 1 that failed again" in again
        assert "failed again after a replay: 1" in mlprep("dlq", "inspect", dead)
        time.sleep(2)
        assert count(kafka_broker, dead) == 4 and count(kafka_broker, target) == 9
        # the processor's /metrics (beside the REST API's) counts the same: 10 + 3 replayed in, 4 dead letters
        assert eventually(lambda: metric(processor.client, "mlprep_kafka_records_consumed_total") == 13)
        assert metric(processor.client, "mlprep_kafka_dead_letters_total", stage="preprocess") == 4
        assert metric(processor.client, "mlprep_kafka_records_produced_total") == 9
        assert "mlprep_requests" in processor.client.get("/metrics").text
    finally:
        processor.stop()
