"""The stream processor with the model in process (``mlprep kafka --model``): the churn run's preprocessing
and its registered model on the session's MLflow server, the embedded broker, real processes."""

from __future__ import annotations

import json
import runpy
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from conftest import write_files
from test_kafka import headers_of, health_when, metric, produce, read, start_processor, topic

# What the test's preprocessing adds to the churn run's: a record it cannot preprocess, and one whose
# features the model refuses (a string in a numeric column), so that only batches holding it fail.
POISONED = """

_features = pre_processing
del pre_processing_batch


def pre_processing(record):
    if record.get("customer_id") == "explode":
        raise ValueError("this customer cannot be preprocessed")
    features = _features(record)
    if record.get("customer_id") == "poison":
        features["tenure_months"] = "not a number"
    return features
"""
GOOD = 500
MODEL_START_S = 180  # the model is fetched from the MLflow server and loaded before the consumer starts


@pytest.fixture(scope="module")
def poisoned(churn_model, tmp_path_factory) -> Path:
    """The churn run's fetched preprocessing folder (run_info.json included), poisoned as above."""
    folder = tmp_path_factory.mktemp("churn-poisoned") / "code"
    shutil.copytree(churn_model.preprocessing, folder)
    script = folder / "preprocessing.py"
    script.write_text(script.read_text() + POISONED)
    return folder


def customers(churn_model, count: int) -> list[dict]:
    """``count`` raw customers with distinct ids ``c0000``..., the fixture's 300 records reused."""
    return [{**churn_model.records[i % len(churn_model.records)], "customer_id": f"c{i:04d}"} for i in range(count)]


def expected_predictions(churn_model, mlflow_server, records: list[dict]) -> dict[str, object]:
    """What MLflow's own pyfunc predicts on the run's preprocessing of ``records``, by customer id."""
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(mlflow_server.url)
    features = runpy.run_path(str(churn_model.preprocessing / "preprocessing.py"))["pre_processing"]
    rows = [features(record) for record in records]
    model = mlflow.pyfunc.load_model(f"models:/{churn_model.name}/{churn_model.version}")
    predicted = model.predict(pd.DataFrame(rows)).tolist()
    return {row["customer_id"]: prediction for row, prediction in zip(rows, predicted, strict=True)}


def message(record: dict) -> tuple[bytes, bytes]:
    return record["customer_id"].encode(), json.dumps(record, allow_nan=False).encode()


@dataclass
class Run:
    """What one processor run with the model left behind."""

    records: list[dict]
    out: list[tuple[bytes | None, bytes | None]]
    out_headers: list[dict[str, bytes]]
    letters: dict[bytes, bytes]
    letter_headers: dict[bytes, dict[str, bytes]]
    health: dict
    metrics: dict[str, float | None]


@pytest.fixture(scope="module")
def run(kafka_broker, mlflow_server, churn_model, poisoned, tmp_path_factory) -> Run:
    return predict_run(kafka_broker, mlflow_server, churn_model, poisoned, tmp_path_factory.mktemp("predict"))


def predict_run(kafka_broker, mlflow_server, churn_model, folder: Path, tmp_path: Path, **env: str) -> Run:
    """500 keyed customers, a record the model refuses among them, one that is not an object and one
    whose preprocessing raises, through ``mlprep kafka --model`` (at least once, one process); what
    is in the topics once every message is accounted for."""
    source, target, dead = topic("predict-in"), topic("predict-out"), topic("predict-dlq")
    good = customers(churn_model, GOOD)
    base = churn_model.records[0]
    bad = [
        message({**base, "customer_id": "poison"}),
        (b"not-an-object", b"3"),
        message({**base, "customer_id": "explode"}),
    ]
    produce(kafka_broker, source, [*map(message, good[:250]), *bad, *map(message, good[250:])])
    processor = start_processor(
        kafka_broker,
        tmp_path,
        folder,
        options=["--model", churn_model.uri],
        timeout=MODEL_START_S,
        INPUT_TOPIC=source,
        OUTPUT_TOPIC=target,
        DEAD_LETTER_TOPIC=dead,
        PASSTHROUGH_FIELDS="customer_id",
        **mlflow_server.env(),
        **env,
    )
    try:
        health = health_when(processor, lambda k: k["consumed"] == GOOD + 3, timeout=120)
        metrics = {
            "consumed": metric(processor.client, "mlprep_kafka_records_consumed_total"),
            "produced": metric(processor.client, "mlprep_kafka_records_produced_total"),
            **{
                stage: metric(processor.client, "mlprep_kafka_dead_letters_total", stage=stage)
                for stage in ("decode", "preprocess", "model", "serialize", "handle")
            },
        }
        out, letters = read(kafka_broker, target, 0), read(kafka_broker, dead, 0)  # acknowledged, all there
        out_headers = headers_of(kafka_broker, target) if out else []
        letter_headers = {h["mlprep-error-stage"]: h for h in headers_of(kafka_broker, dead)} if letters else {}
        return Run(good, out, out_headers, dict(letters), letter_headers, health, metrics)
    finally:
        processor.stop()


def test_every_record_gets_the_models_prediction_with_its_key_and_passthrough_fields(run, churn_model, mlflow_server):
    expected = expected_predictions(churn_model, mlflow_server, run.records)
    assert len(set(expected.values())) > 1  # the model does not answer one class to everything
    got = {key: json.loads(value) for key, value in run.out}
    assert len(got) == len(run.out) == GOOD  # one output each, no more
    assert got == {
        customer.encode(): {"customer_id": customer, "prediction": prediction}
        for customer, prediction in expected.items()
    }


def test_outputs_name_the_run_and_the_model_version_that_predicted(run, churn_model):
    assert len(run.out_headers) == GOOD
    for headers in run.out_headers:
        assert headers["mlprep-served-model"] == churn_model.name.encode()
        assert headers["mlprep-served-version"] == churn_model.version.encode()
        assert headers["mlprep-run-id"] == churn_model.run_id.encode()  # the preprocessing's run
    model = run.health["model"]
    assert (model["name"], model["version"], model["alias"]) == (churn_model.name, churn_model.version, "champion")


def test_only_the_bad_records_are_dead_lettered_each_with_its_stage(run):
    """The batch holding the record the model refuses is bisected: that record alone is dead-lettered
    (stage ``model``), the 250 customers before it and the 250 after are predicted."""
    assert sorted(run.letters) == [b"explode", b"not-an-object", b"poison"]
    assert len(run.out) == GOOD
    assert run.letters[b"not-an-object"] == b"3"
    by_stage = run.letter_headers
    assert sorted(by_stage) == [b"decode", b"model", b"preprocess"]
    assert b"not a record" in by_stage[b"decode"]["mlprep-error"]
    assert b"ValueError: this customer cannot be preprocessed" in by_stage[b"preprocess"]["mlprep-error"]
    assert b"the model raised" in by_stage[b"model"]["mlprep-error"]
    assert json.loads(run.letters[b"poison"])["customer_id"] == "poison"  # the raw input, not the features


def test_health_and_metrics_count_what_was_sent(run):
    health = run.health
    assert (health["consumed"], health["out"], health["dropped"], health["dead_lettered"]) == (GOOD + 3, GOOD, 0, 3)
    assert health["produced"] == GOOD
    assert health["dead_by_stage"] == {"decode": 1, "preprocess": 1, "model": 1}
    assert run.metrics == {
        "consumed": GOOD + 3,
        "produced": GOOD,
        "decode": 1,
        "preprocess": 1,
        "model": 1,
        "serialize": None,
        "handle": None,
    }


def test_exactly_once_with_two_workers_each_loading_the_model(
    kafka_broker, mlflow_server, churn_model, poisoned, tmp_path
):
    """PROCESSING_GUARANTEE=exactly-once, --workers 2 over 2 partitions (MODEL_URI from the environment):
    a read_committed consumer sees each customer's prediction once, the refused record is dead-lettered
    in the same transactions, and /health shows the model each worker serves."""
    source = kafka_broker.create_topic(topic("eos-predict-in"), 2)
    target = kafka_broker.create_topic(topic("eos-predict-out"), 2)
    dead = topic("eos-predict-dlq")
    records = customers(churn_model, 300)
    produce(kafka_broker, source, [*map(message, records), message({**records[0], "customer_id": "poison"})])
    processor = start_processor(
        kafka_broker,
        tmp_path,
        poisoned,
        options=["--workers", "2"],
        timeout=MODEL_START_S,
        INPUT_TOPIC=source,
        OUTPUT_TOPIC=target,
        DEAD_LETTER_TOPIC=dead,
        CONSUMER_GROUP_ID=source,
        PROCESSING_GUARANTEE="exactly-once",
        BATCH_SIZE="100",
        MODEL_URI=churn_model.uri,
        PASSTHROUGH_FIELDS="customer_id",
        **mlflow_server.env(),
    )
    try:
        health = health_when(processor, lambda k: k["consumed"] == len(records) + 1, timeout=90)
        assert health["guarantee"] == "exactly-once" and health["committed_batches"] >= 2
        assert (health["out"], health["dead_by_stage"]) == (len(records), {"model": 1})
        assert health["model"]["version"] == churn_model.version
        assert [w["model_version"] for w in health["workers"]] == [churn_model.version] * 2
        seen = committed_keys(kafka_broker, target, 2, len(records))
        assert sorted(seen) == sorted(r["customer_id"].encode() for r in records)  # each key once
        assert [key for key, _ in read(kafka_broker, dead, 1)] == [b"poison"]
    finally:
        processor.stop()


def committed_keys(broker, name: str, partitions: int, at_least: int, timeout: float = 60) -> list[bytes]:
    """The keys a read_committed consumer reads from ``name`` (until nothing more comes)."""
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": uuid.uuid4().hex,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(name, p, 0) for p in range(partitions)])
    keys: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            batch = [m for m in consumer.consume(1000, timeout=1) if not m.error()]
            keys.extend(m.key() for m in batch)
            if not batch and len(keys) >= at_least:
                return keys
        pytest.fail(f"{name}: {len(keys)} committed messages after {timeout} s, expected {at_least}")
    finally:
        consumer.close()


def test_an_alias_moved_while_consuming_switches_the_version_that_predicts(
    kafka_broker, mlflow_server, churn_model, tmp_path
):
    """MODEL_RELOAD_S=1 on ``models:/NAME@live`` (a model of its own, two versions of the churn model):
    the watcher runs with the loop, so moving the alias makes the next outputs name version 2."""
    import mlflow

    mlflow.set_tracking_uri(mlflow_server.url)
    client = mlflow.MlflowClient()
    source_uri = client.get_model_version(churn_model.name, churn_model.version).source
    name = f"churn-live-{uuid.uuid4().hex[:6]}"
    versions = [mlflow.register_model(source_uri, name).version for _ in range(2)]
    client.set_registered_model_alias(name, "live", versions[0])
    source, target = topic("alias-in"), topic("alias-out")
    records = customers(churn_model, 20)
    produce(kafka_broker, source, [*map(message, records[:10])])
    processor = start_processor(
        kafka_broker,
        tmp_path,
        churn_model.preprocessing,
        timeout=MODEL_START_S,
        INPUT_TOPIC=source,
        OUTPUT_TOPIC=target,
        MODEL_URI=f"models:/{name}@live",
        MODEL_RELOAD_S="1",
        **mlflow_server.env(),
    )
    try:
        read(kafka_broker, target, 10)
        client.set_registered_model_alias(name, "live", versions[1])
        model = health_when(processor, lambda k: k["model"]["version"] == str(versions[1]), timeout=90)["model"]
        assert (model["switches"], model["alias"]) == (1, "live")
        produce(kafka_broker, source, [*map(message, records[10:])])
        read(kafka_broker, target, 20)
        served = [h["mlprep-served-version"] for h in headers_of(kafka_broker, target)]
        assert sorted(served) == [str(v).encode() for v in versions[0:1] * 10 + versions[1:2] * 10]
    finally:
        processor.stop()


def test_without_a_model_the_processor_imports_no_mlflow(kafka_broker, tmp_path):
    """``mlprep kafka`` without ``--model`` preprocesses as before, and never imports MLflow (the
    interpreter's own import log of the real process says so)."""
    source, target = topic("plain-in"), topic("plain-out")
    folder = write_files(tmp_path / "pp", {"preprocessing.py": "def pre_processing(d):\n    return {**d, 'seen': 1}\n"})
    produce(kafka_broker, source, [(b"k", b'{"a": 1}')])
    processor = start_processor(
        kafka_broker, tmp_path, folder, INPUT_TOPIC=source, OUTPUT_TOPIC=target, PYTHONPROFILEIMPORTTIME="1"
    )
    try:
        assert read(kafka_broker, target, 1) == [(b"k", b'{"a":1,"seen":1}')]
        assert processor.client.get("/health").json()["kafka"].get("model") is None
    finally:
        processor.stop()
    imported = [line.rsplit("|", 1)[-1].strip() for line in processor.log.read_text().splitlines() if "|" in line]
    assert "mlprep.kafka.processor" in imported and "confluent_kafka" in imported
    assert not [name for name in imported if name.split(".")[0] == "mlflow"]
