"""Delivery guarantees of the stream processor, against the embedded broker and real processes."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from conftest import ProcessServer, write_files
from infra import KafkaBroker, KafkaProxy
from test_kafka import start_processor, topic

RECORDS = 20_000
PARTITIONS = 3


def produce_keyed(broker, name: str, count: int, start: int = 0) -> dict[bytes, tuple[int, int]]:
    """``count`` JSON records keyed ``k<i>`` from ``i = start``; returns where each key landed (partition, offset)."""
    where: dict[bytes, tuple[int, int]] = {}

    def delivered(error, message) -> None:
        assert error is None, error
        where[message.key()] = (message.partition(), message.offset())

    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 5})
    for i in range(start, start + count):
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

    def to_end(self, timeout: float = 60) -> list[bytes]:
        """Everything in the topic now: read until every partition's high watermark."""
        partitions = [TopicPartition(tp.topic, tp.partition) for tp in self.consumer.assignment()]
        ends = {tp.partition: self.consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions}
        deadline = time.monotonic() + timeout
        while any(tp.offset < ends[tp.partition] for tp in self.consumer.position(partitions)):
            assert time.monotonic() < deadline, f"the output not read to its end {ends} in {timeout} s"
            self.drain()
        return self.keys

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


def wait_for(condition: Callable[[], object], what: str, processor: ProcessServer, timeout: float = 90) -> None:
    """Polls ``condition`` until it holds; fails (with the processor's log) past ``timeout`` or if it exits."""
    deadline = time.monotonic() + timeout
    while not condition():
        tail = processor.log.read_text()[-3000:]
        assert processor.process.poll() is None, f"the processor exited while waiting for {what}:\n{tail}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s:\n{tail}"
        time.sleep(0.1)


@pytest.fixture
def proxied_broker():
    """A broker of the test's own whose every client connection goes through a ``KafkaProxy``."""
    proxy = KafkaProxy()
    try:
        broker = KafkaBroker(proxy)
    except BaseException:
        proxy.stop()
        raise
    yield broker, proxy
    broker.stop()
    proxy.stop()


FIRST, SECOND, BATCH = 1000, 1000, 100


@dataclass
class HeldRun:
    """What a run of ``kill_with_request_held`` saw: where each input key is (partition, offset), the
    group's committed offsets while the request was held and after the kill, the output's keys at the
    kill (read_uncommitted: written; read_committed: visible) and at the end."""

    where: dict[bytes, tuple[int, int]]
    committed: dict[int, int]
    after_kill: dict[int, int]
    written: list[bytes]
    visible: list[bytes]
    final_written: list[bytes]
    final_visible: list[bytes]

    def done(self) -> set[bytes]:
        """The keys whose input offsets were committed before the kill."""
        return {key for key, (partition, offset) in self.where.items() if offset < self.committed[partition]}

    def held_batch(self) -> set[bytes]:
        """The keys written to the output before the kill whose input offsets were not committed."""
        return set(self.written) - self.done()


PROCESSOR_PRODUCER = "mlprep-processor"  # the client.id of the processor's producer


def held_stream(
    broker: KafkaBroker, tmp_path: Path, name: str, guarantee: str
) -> tuple[str, str, dict[bytes, tuple[int, int]], Path, dict[str, str]]:
    """Input and output topics, FIRST keyed records in the input (key -> partition, offset), an
    identity preprocessing and the processor's settings, in batches of BATCH."""
    source = broker.create_topic(topic(f"{name}-in"), PARTITIONS)
    target = broker.create_topic(topic(f"{name}-out"), PARTITIONS)
    where = produce_keyed(broker, source, FIRST)
    folder = write_files(tmp_path / "pp", {"preprocessing.py": "def pre_processing(d):\n    return d\n"})
    env = {
        "INPUT_TOPIC": source,
        "OUTPUT_TOPIC": target,
        "CONSUMER_GROUP_ID": source,
        "BATCH_SIZE": str(BATCH),
        "PROCESSING_GUARANTEE": guarantee,
    }
    return source, target, where, folder, env


def kill_with_request_held(
    proxied, tmp_path: Path, guarantee: str, api_key: int, client_id: str | None = None, outputs_first: bool = True
) -> HeldRun:
    """FIRST keyed records through the processor and committed; then, the proxy holding the requests of
    ``api_key`` (of ``client_id``), SECOND more until one such request is held: the processor waits on
    it (``outputs_first``: with the outputs of a batch written). Then kill -9 (the held request dies
    with it), and a restart without holding, to the end."""
    broker, proxy = proxied
    source, target, where, folder, env = held_stream(broker, tmp_path, "held", guarantee)
    env["KAFKA_PRODUCER_CONFIG"] = json.dumps({"client.id": PROCESSOR_PRODUCER})
    written = Tail(broker, target, "read_uncommitted")
    visible = Tail(broker, target, "read_committed")
    offsets = Committed(broker, source, source)
    try:
        processor = start_processor(broker, tmp_path, folder, **env)
        try:
            wait_for(lambda: sum(offsets.now().values()) == FIRST, "first records committed", processor)
            proxy.hold(api_key, client_id)
            where |= produce_keyed(broker, source, SECOND, start=FIRST)
            wait_for(lambda: api_key in proxy.held, f"request (api_key {api_key}) held", processor)
            committed = offsets.now()
            done = {key for key, (partition, offset) in where.items() if offset < committed[partition]}
            if outputs_first:
                wait_for(lambda: set(written.drain()) - done, "output beyond the committed offsets", processor)
                wait_for(lambda: done <= set(visible.drain()), "every committed record visible", processor)
        finally:
            processor.stop(kill=True)
        proxy.release()
        at_kill = HeldRun(where, committed, offsets.now(), list(written.to_end()), list(visible.drain()), [], [])
        restarted = start_processor(broker, tmp_path, folder, **env)
        try:
            wait_for(lambda: sum(offsets.now().values()) == FIRST + SECOND, "every record committed", restarted)
        finally:
            restarted.stop()
        return replace(at_kill, final_written=list(written.to_end()), final_visible=list(visible.to_end()))
    finally:
        written.close()
        visible.close()
        offsets.close()


def test_at_least_once_re_emits_exactly_the_batch_a_kill_9_left_uncommitted(proxied_broker, tmp_path):
    """A kill -9 between "outputs acknowledged" and "offsets committed" (the proxy holds OffsetCommit):
    the restart produces that batch again, and only that batch."""
    run = kill_with_request_held(proxied_broker, tmp_path, "at-least-once", KafkaProxy.OFFSET_COMMIT)
    held, done = run.held_batch(), run.done()
    assert 0 < len(held) <= BATCH  # produced and acknowledged before its commit was sent
    assert run.after_kill == run.committed  # the held commit never reached the broker
    assert len(done) == FIRST and done <= set(run.written)  # every committed record was produced first
    counts = Counter(run.final_visible)
    assert set(counts) == set(run.where)  # nothing missing
    assert {key for key, n in counts.items() if n > 1} == held  # that batch twice: re-emitted
    assert max(counts.values()) == 2
    assert all(counts[key] == 1 for key in done)  # records committed before the kill: never re-emitted


def test_at_least_once_commits_nothing_of_a_batch_whose_outputs_a_kill_9_cut_off(proxied_broker, tmp_path):
    """A kill -9 while the outputs of a batch are on their way (the proxy holds the processor's Produce
    requests): none of its offsets were committed, so the restart produces it, once; nothing is lost."""
    run = kill_with_request_held(
        proxied_broker, tmp_path, "at-least-once", KafkaProxy.PRODUCE, PROCESSOR_PRODUCER, outputs_first=False
    )
    counts = Counter(run.final_visible)
    assert set(counts) == set(run.where)  # nothing missing
    assert max(counts.values()) == 1  # and nothing twice: no output of the batch reached the broker
    assert sum(run.committed.values()) == FIRST  # none of the batch's offsets committed before its outputs
    assert run.after_kill == run.committed and not run.held_batch()


def test_exactly_once_kill_9_with_the_transaction_commit_held_commits_none_of_its_batch(proxied_broker, tmp_path):
    """A kill -9 while the commit of a transaction is held (the proxy holds EndTxn): its outputs stay
    invisible to read_committed consumers, its input offsets uncommitted, and the restarted process
    (same transactional.id) handles exactly that batch again."""
    run = kill_with_request_held(proxied_broker, tmp_path, "exactly-once", KafkaProxy.END_TXN)
    held, done = run.held_batch(), run.done()
    assert 0 < len(held) <= BATCH  # written in the open transaction
    assert set(run.visible) == done  # read_committed: the committed transactions, none of the open one
    assert run.after_kill == run.committed  # the open transaction's offsets were not committed
    written = Counter(run.final_written)
    assert set(written) == set(run.where) and set(run.final_visible) == set(run.where)  # nothing missing
    assert {key for key, n in written.items() if n > 1} == held  # its batch handled again, and only it
    assert all(written[key] == 1 for key in done)
    # The embedded broker returns no aborted-transaction ranges: read_committed also reads the aborted batch.
    twice = len(run.final_visible) - len(set(run.final_visible))
    print(f"exactly-once: {len(held)} records in the aborted transaction; read_committed read {twice} twice")


def test_exactly_once_waits_again_for_a_transaction_commit_the_broker_answers_late(proxied_broker, tmp_path):
    """The broker answers a transaction's EndTxn only after the commit call's 30 s timeout (the proxy
    holds the request, then sends it on): the processor waits for the same commit again instead of
    aborting, goes on, and every key comes out once."""
    broker, proxy = proxied_broker
    source, target, where, folder, env = held_stream(broker, tmp_path, "late", "exactly-once")
    visible = Tail(broker, target, "read_committed")
    offsets = Committed(broker, source, source)
    processor = start_processor(broker, tmp_path, folder, **env)
    try:
        wait_for(lambda: sum(offsets.now().values()) == FIRST, "first records committed", processor)
        proxy.hold(KafkaProxy.END_TXN)
        where |= produce_keyed(broker, source, SECOND, start=FIRST)
        wait_for(lambda: KafkaProxy.END_TXN in proxy.held, "a transaction's commit held", processor)
        wait_for(lambda: "waiting for it again" in processor.log.read_text(), "the commit waited for again", processor)
        proxy.send_held()
        wait_for(lambda: sum(offsets.now().values()) == FIRST + SECOND, "every record committed", processor)
        counts = Counter(visible.to_end())
        health = processor.client.get("/health").json()["kafka"]
    finally:
        processor.stop()
        visible.close()
        offsets.close()
    assert set(counts) == set(where) and max(counts.values()) == 1  # nothing missing, nothing twice
    assert health["aborted_transactions"] == 0 and health["state"] == "running"
