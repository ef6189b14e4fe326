"""Consume a batch, handle it, produce the results, commit: the loop of the processor and the bridge.

At-least-once: a batch's offsets are committed only after every record produced from it (outputs
and dead letters) is acknowledged by the broker. Nothing is flushed per message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from mlprep.errors import MlprepError
from mlprep.kafka import config
from mlprep.settings import Settings

log = logging.getLogger("mlprep.kafka")
Headers = list[tuple[str, bytes]]


@dataclass(slots=True)
class Outgoing:
    topic: str
    value: bytes
    key: bytes | None
    headers: Headers = field(default_factory=list)
    dead: bool = False


class Handler(Protocol):
    def handle(self, messages: list[Message]) -> list[Outgoing]: ...


def dead_letter(topic: str, message: Message, stage: str, error: str) -> Outgoing:
    """The raw message, with where it came from and why it failed in its headers."""
    headers: Headers = [
        *(message.headers() or []),
        ("mlprep-error", error.encode()[:8000]),
        ("mlprep-error-stage", stage.encode()),
        ("mlprep-source-topic", (message.topic() or "").encode()),
        ("mlprep-source-partition", str(message.partition()).encode()),
        ("mlprep-source-offset", str(message.offset()).encode()),
    ]
    return Outgoing(topic, message.value() or b"", message.key(), headers, dead=True)


def stream_topics(settings: Settings, what: str) -> tuple[str, str, str]:
    """INPUT_TOPIC, OUTPUT_TOPIC and the dead-letter topic (default ``<INPUT_TOPIC>-dlq``)."""
    if not settings.input_topic or not settings.output_topic:
        raise MlprepError(f"{what} needs INPUT_TOPIC and OUTPUT_TOPIC")
    return settings.input_topic, settings.output_topic, settings.dead_letter_topic or f"{settings.input_topic}-dlq"


def stream_loop(name: str, settings: Settings, handler: Handler, default_group: str) -> BatchLoop:
    """The loop of a front end from INPUT_TOPIC, in CONSUMER_GROUP_ID (else ``default_group``)."""
    return BatchLoop(
        name,
        settings.input_topic or "",
        handler,
        config.consumer(settings, settings.consumer_group_id or default_group),
        config.producer(settings),
        settings.batch_size,
        settings.batch_timeout_ms,
    )


class DeliveryError(MlprepError):
    """Records could not be written to Kafka: the batch is not committed (it will be read again)."""


class BatchLoop:
    """Runs ``handler`` over batches of ``topic`` until ``stop()``; ``health()`` tells how it goes."""

    def __init__(
        self,
        name: str,
        topic: str,
        handler: Handler,
        consumer_config: dict[str, Any],
        producer_config: dict[str, Any],
        batch_size: int,
        batch_timeout_ms: int,
    ) -> None:
        self.name, self.topic, self.handler = name, topic, handler
        self.consumer_config, self.producer_config = consumer_config, producer_config
        self.batch_size, self.timeout = batch_size, batch_timeout_ms / 1000
        self._stop = threading.Event()
        self.state: dict[str, Any] = {
            "state": "starting",
            "ready": False,
            "topic": topic,
            "consumed": 0,
            "produced": 0,
            "dead_lettered": 0,
            "committed_batches": 0,
            "lag": None,
            "partitions": [],
            "error": None,
            "seconds": {"consume": 0.0, "handle": 0.0, "produce": 0.0, "commit": 0.0},
        }
        self._lag_checked = 0.0

    def stop(self) -> None:
        self._stop.set()

    def health(self) -> dict[str, Any]:
        return dict(self.state)

    def run(self) -> None:
        """Blocks until stopped; raises on a fatal error (nothing of the current batch is committed)."""
        consumer = Consumer(self.consumer_config)
        producer = Producer(self.producer_config)
        consumer.subscribe([self.topic], on_assign=self._assigned, on_revoke=self._revoked)
        self.state["state"] = "running"
        try:
            seconds = self.state["seconds"]
            while not self._stop.is_set():
                begin = time.perf_counter()
                messages = consumer.consume(num_messages=self.batch_size, timeout=self.timeout)
                seconds["consume"] += time.perf_counter() - begin
                batch = [m for m in messages if self._usable(m)]
                if batch:
                    self._process(batch, consumer, producer)
                self._measure_lag(consumer)
            self.state["state"] = "stopping"
        except Exception as exc:
            self.state.update(state="failed", ready=False, error=f"{type(exc).__name__}: {exc}")
            raise
        finally:
            producer.flush(30)
            consumer.close()
            if self.state["state"] != "failed":
                self.state.update(state="stopped", ready=False)

    def _usable(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("%s: consumer error: %s", self.name, error)
            if error.fatal():
                raise KafkaException(error)
        return False

    def _process(self, batch: list[Message], consumer: Consumer, producer: Producer) -> None:
        seconds = self.state["seconds"]
        begin = time.perf_counter()
        outgoing = self.handler.handle(batch)
        handled = time.perf_counter()
        self._produce(producer, outgoing)
        produced = time.perf_counter()
        seconds["handle"] += handled - begin
        seconds["produce"] += produced - handled
        offsets: dict[tuple[str, int], int] = {}
        for message in batch:
            key = (message.topic(), message.partition())
            offsets[key] = max(offsets.get(key, -1), message.offset())
        consumer.commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in offsets.items()], asynchronous=False)
        seconds["commit"] += time.perf_counter() - produced
        self.state["consumed"] += len(batch)
        self.state["produced"] += sum(not o.dead for o in outgoing)
        self.state["dead_lettered"] += sum(o.dead for o in outgoing)
        self.state["committed_batches"] += 1

    def _produce(self, producer: Producer, outgoing: list[Outgoing], attempts: int = 3) -> None:
        pending = outgoing
        for _attempt in range(attempts):
            failed: list[Outgoing] = []
            for item in pending:
                self._send(producer, item, failed.append)
            producer.flush(60)
            if not failed:
                return
            log.warning("%s: %d records not acknowledged, retrying", self.name, len(failed))
            pending = failed
        raise DeliveryError(f"{len(pending)} records could not be written to Kafka; the batch is not committed")

    @staticmethod
    def _send(producer: Producer, item: Outgoing, on_failure: Callable[[Outgoing], None]) -> None:
        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                on_failure(item)

        while True:
            try:
                producer.produce(item.topic, item.value, item.key, headers=item.headers, on_delivery=delivered)
                return
            except BufferError:  # the local queue is full: let deliveries drain
                producer.poll(0.1)

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.state["partitions"] = sorted({*self.state["partitions"], *(p.partition for p in partitions)})
        self.state["ready"] = True

    def _revoked(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {p.partition for p in partitions}
        self.state["partitions"] = [p for p in self.state["partitions"] if p not in gone]

    def _measure_lag(self, consumer: Consumer) -> None:
        if time.monotonic() - self._lag_checked < 2:
            return
        self._lag_checked = time.monotonic()
        try:
            assigned = consumer.assignment()
            positions = consumer.position(assigned) if assigned else []
            lag = 0
            for position in positions:
                _low, high = consumer.get_watermark_offsets(position, timeout=2)
                lag += max(high - position.offset, 0) if position.offset >= 0 else max(high, 0)
            self.state["lag"] = lag
        except KafkaException as exc:
            log.debug("lag unknown: %s", exc)
