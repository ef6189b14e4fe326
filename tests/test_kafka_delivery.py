"""Delivery guarantees of the stream processor, against the embedded broker and real processes."""

from __future__ import annotations

import json
import random
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from conftest import write_files
from test_kafka import start_processor, topic

RECORDS = 20_000
PARTITIONS = 3


def produce_keyed(broker, name: str, count: int) -> dict[bytes, tuple[int, int]]:
    """``count`` JSON records keyed ``k<i>``; returns where each key landed (partition, offset)."""
    where: dict[bytes, tuple[int, int]] = {}

    def delivered(error, message) -> None:
        assert error is None, error
        where[message.key()] = (message.partition(), message.offset())

    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for i in range(count):
        producer.produce(name, json.dumps({"k": i}).encode(), f"k{i}".encode(), on_delivery=delivered)
        if i % 5000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    assert len(where) == count
    return where


class Tail:
    """Reads a topic from its start as it grows, with one isolation level; keeps every key in order."""

    def __init__(self, broker, name: str, isolation: str) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": uuid.uuid4().hex,
                "isolation.level": isolation,
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,  # what is on the broker now, at once
            }
        )
        self.consumer.assign([TopicPartition(name, p, 0) for p in range(PARTITIONS)])
        self.keys: list[bytes] = []

    def drain(self, quiet: float = 0.3) -> list[bytes]:
        """Everything readable now (until nothing comes for ``quiet`` seconds)."""
        while True:
            batch = [m for m in self.consumer.consume(1000, timeout=quiet) if not m.error()]
            if not batch:
                return self.keys
            self.keys.extend(m.key() for m in batch)

    def close(self) -> None:
        self.consumer.close()


class Committed:
    """The committed offsets of a group, read without joining it."""

    def __init__(self, broker, group: str, name: str) -> None:
        self.consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
        self.partitions = [TopicPartition(name, p) for p in range(PARTITIONS)]

    def now(self) -> dict[int, int]:
        """Each partition's committed offset (0 when none yet)."""
        return {tp.partition: max(tp.offset, 0) for tp in self.consumer.committed(self.partitions, timeout=10)}

    def close(self) -> None:
        self.consumer.close()


def run_with_kills(broker, tmp_path: Path, guarantee: str, kills: int = 3) -> tuple[dict[bytes, int], dict]:
    """20 000 keyed records through the processor, killed with SIGKILL ``kills`` times at random points of
    the stream and restarted each time. Returns how many times a read_committed consumer of the output
    saw each key, and the last processor's /health."""
    source = broker.create_topic(topic("eos-in"), PARTITIONS)
    target = broker.create_topic(topic("eos-out"), PARTITIONS)
    produce_keyed(broker, source, RECORDS)
    folder = write_files(
        tmp_path / "pp",
        {"preprocessing.py": "import time\n\ndef pre_processing(d):\n    time.sleep(0.0002)\n    return d\n"},
    )
    env = {
        "INPUT_TOPIC": source,
        "OUTPUT_TOPIC": target,
        "CONSUMER_GROUP_ID": source,
        "BATCH_SIZE": "250",
        "PROCESSING_GUARANTEE": guarantee,
    }
    visible = Tail(broker, target, "read_committed")
    offsets = Committed(broker, source, source)
    rng = random.Random()
    points = sorted(rng.sample(range(1000, RECORDS - 4000), kills))
    try:
        for point in points:
            processor = start_processor(broker, tmp_path, folder, **env)
            try:
                deadline = time.monotonic() + 120
                while sum(offsets.now().values()) < point:  # committed progress of the group, any process
                    assert time.monotonic() < deadline, processor.log.read_text()[-2000:]
                    assert processor.process.poll() is None, processor.log.read_text()[-2000:]
                    time.sleep(rng.uniform(0, 0.05))
            finally:
                processor.stop(kill=True)
        last = start_processor(broker, tmp_path, folder, **env)
        try:
            deadline = time.monotonic() + 180
            while len(set(visible.drain())) < RECORDS and time.monotonic() < deadline:
                time.sleep(0.5)
            time.sleep(2)  # anything more (duplicates) arrives too
            seen = visible.drain()
            health = last.client.get("/health").json()["kafka"]
            assert sum(offsets.now().values()) == RECORDS  # every input offset committed, once drained
        finally:
            last.stop()
    finally:
        visible.close()
        offsets.close()
    counts: dict[bytes, int] = {}
    for key in seen:
        counts[key] = counts.get(key, 0) + 1
    duplicates = sum(n - 1 for n in counts.values())
    print(f"{guarantee}: {RECORDS} records, kill -9 at committed offsets {points}: {duplicates} duplicates")
    return counts, health


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_three_kill_9_and_restarts_lose_no_key(kafka_broker, tmp_path, guarantee):
    counts, health = run_with_kills(kafka_broker, tmp_path, guarantee)
    assert len(counts) == RECORDS  # nothing missing
    assert health["guarantee"] == guarantee


def test_two_workers_share_the_partitions_of_one_group_and_report_together(kafka_broker, tmp_path):
    source = kafka_broker.create_topic(topic("workers-in"), 4)
    target = kafka_broker.create_topic(topic("workers-out"), PARTITIONS)
    folder = write_files(
        tmp_path / "pp",
        {"preprocessing.py": "import os\n\ndef pre_processing(d):\n    return {**d, 'pid': os.getpid()}\n"},
    )
    (tmp_path / "prometheus").mkdir()
    env = {
        "INPUT_TOPIC": source,
        "OUTPUT_TOPIC": target,
        "CONSUMER_GROUP_ID": source,
        "WORKERS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),  # the Kafka series are there in this mode too
    }
    processor = start_processor(kafka_broker, tmp_path, folder, **env)
    try:
        health = processor.client.get("/health").json()["kafka"]
        assert [w["state"] for w in health["workers"]] == ["running", "running"]
        assert sorted(health["partitions"]) == [0, 1, 2, 3]  # ready: every partition is someone's
        assert not set(health["workers"][0]["partitions"]) & set(health["workers"][1]["partitions"])
        produce_keyed(kafka_broker, source, 2000)
        visible = Tail(kafka_broker, target, "read_committed")
        deadline = time.monotonic() + 60
        while len(visible.drain()) < 2000 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
        keys = visible.drain()
        visible.close()
        assert sorted(keys) == sorted(f"k{i}".encode() for i in range(2000))  # every key once
        deadline = time.monotonic() + 10
        while processor.client.get("/health").json()["kafka"]["consumed"] < 2000 and time.monotonic() < deadline:
            time.sleep(0.2)
        health = processor.client.get("/health").json()["kafka"]
        assert health["consumed"] == health["produced"] == 2000
        assert all(w["consumed"] > 0 for w in health["workers"])  # both did some of the work
        metrics = processor.client.get("/metrics").text
        per_worker = [
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("mlprep_kafka_records_consumed_total{")
        ]
        assert len(per_worker) == 2 and sum(per_worker) == 2000
    finally:
        processor.stop()
    assert processor.process.returncode == 0  # SIGTERM drained both workers
