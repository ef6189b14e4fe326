"""Consume a batch, handle it, produce the results, commit: the loop of the processor and the bridge.

At-least-once: a batch's offsets are committed only after every record produced from it (outputs
and dead letters) is acknowledged by the broker. Nothing is flushed per message.

Nothing lost: every consumed message ends counted as ``out`` (it produced outputs), ``dropped`` (the
preprocessing returned nothing for it) or ``dead_lettered``. A message whose handling raises, or
whose output the producer refuses as too large, is dead-lettered; a dead letter too large for
``message.max.bytes`` keeps its headers and a truncated value. An error the loop cannot handle
stops it with state ``failed``: the process must then exit non-zero so its supervisor restarts it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from mlprep.errors import MlprepError
from mlprep.kafka import config
from mlprep.redaction import redact
from mlprep.runtime.outcomes import Stage
from mlprep.settings import Settings

log = logging.getLogger("mlprep.kafka")
Headers = list[tuple[str, bytes]]

# librdkafka's default message.max.bytes; it refuses larger messages (key + value + headers) locally.
DEFAULT_MESSAGE_MAX_BYTES = 1_000_000
# Room left under message.max.bytes for the record framing librdkafka adds around key, value and headers.
HEADROOM_BYTES = 1024
TRUNCATED_HEADER = "mlprep-truncated"
# What handling one message may raise without stopping the loop: a user's code calling exit() included
# (in the loop's thread it can only come from that code, never from a signal).
HANDLER_ERRORS = (Exception, SystemExit)


@dataclass(slots=True)
class Outgoing:
    topic: str
    value: bytes
    key: bytes | None
    headers: Headers = field(default_factory=list)
    dead: bool = False
    source: Message | None = None  # the consumed message it comes from: what the loop accounts for


class Handler(Protocol):
    def handle(self, messages: list[Message]) -> list[Outgoing]: ...


def dead_letter(topic: str, message: Message, stage: Stage, error: str) -> Outgoing:
    """The raw message, with where it came from and why it failed (credentials redacted) in its headers."""
    headers: Headers = [
        *(message.headers() or []),
        ("mlprep-error", redact(error).encode()[:8000]),
        ("mlprep-error-stage", stage.encode()),
        ("mlprep-source-topic", (message.topic() or "").encode()),
        ("mlprep-source-partition", str(message.partition()).encode()),
        ("mlprep-source-offset", str(message.offset()).encode()),
    ]
    return Outgoing(topic, message.value() or b"", message.key(), headers, dead=True, source=message)


def stream_topics(settings: Settings, what: str) -> tuple[str, str, str]:
    """INPUT_TOPIC, OUTPUT_TOPIC and the dead-letter topic (default ``<INPUT_TOPIC>-dlq``)."""
    if not settings.input_topic or not settings.output_topic:
        raise MlprepError(f"{what} needs INPUT_TOPIC and OUTPUT_TOPIC")
    return settings.input_topic, settings.output_topic, settings.dead_letter_topic or f"{settings.input_topic}-dlq"


def stream_loop(name: str, settings: Settings, handler: Handler, default_group: str) -> BatchLoop:
    """The loop of a front end from INPUT_TOPIC, in CONSUMER_GROUP_ID (else ``default_group``)."""
    consumer, producer = (
        config.consumer(settings, settings.consumer_group_id or default_group),
        config.producer(settings),
    )
    log.info("%s: consumer %s; producer %s", name, config.safe(consumer), config.safe(producer))
    return BatchLoop(
        name,
        settings.input_topic or "",
        handler,
        consumer,
        producer,
        settings.batch_size,
        settings.batch_timeout_ms,
        stream_topics(settings, name)[2],
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
        dead_topic: str,
    ) -> None:
        self.name, self.topic, self.handler, self.dead_topic = name, topic, handler, dead_topic
        self.consumer_config, self.producer_config = consumer_config, producer_config
        self.batch_size, self.timeout = batch_size, batch_timeout_ms / 1000
        self.max_bytes = int(producer_config.get("message.max.bytes", DEFAULT_MESSAGE_MAX_BYTES))
        self._stop = threading.Event()
        self.state: dict[str, Any] = {
            "state": "starting",
            "ready": False,
            "topic": topic,
            "consumed": 0,  # messages; consumed = out + dropped + dead_lettered
            "out": 0,
            "dropped": 0,
            "dead_lettered": 0,
            "produced": 0,  # output records
            "truncated": 0,  # dead letters whose value was cut to fit message.max.bytes
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

    @property
    def failed(self) -> bool:
        return self.state["state"] == "failed"

    def run(self) -> None:
        """Blocks until stopped; raises on a fatal error (nothing of the current batch is committed)."""
        try:
            consumer = Consumer(self.consumer_config)
            producer = Producer(self.producer_config)
        except BaseException as exc:
            self._fail(exc)
            raise
        try:
            consumer.subscribe([self.topic], on_assign=self._assigned, on_revoke=self._revoked)
            self.state["state"] = "running"
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
        except BaseException as exc:
            self._fail(exc)
            raise
        finally:
            producer.flush(30)
            consumer.close()
            if not self.failed:
                self.state.update(state="stopped", ready=False)

    def _fail(self, exc: BaseException) -> None:
        error = redact(f"{type(exc).__name__}: {exc}")
        self.state.update(state="failed", ready=False, error=error)
        log.error("%s: stopped by an error it cannot handle (the current batch is not committed): %s", self.name, error)

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
        outgoing = [self._fit(item) for item in self._handle(batch)]
        handled = time.perf_counter()
        self._produce(producer, outgoing)
        produced = time.perf_counter()
        seconds["handle"] += handled - begin
        seconds["produce"] += produced - handled
        self._commit(consumer, batch)
        seconds["commit"] += time.perf_counter() - produced
        self._account(batch, outgoing)

    def _handle(self, batch: list[Message]) -> list[Outgoing]:
        """The handler's outgoing records; a message whose handling raises is dead-lettered alone (the
        batch is handled again one message at a time to find it), so no message stops the loop."""
        try:
            return self.handler.handle(batch)
        except HANDLER_ERRORS as exc:
            if len(batch) == 1:
                return [self._unhandled(batch[0], exc)]
            log.warning("%s: a batch of %d raised %s; handling it one message at a time", self.name, len(batch), exc)
        outgoing: list[Outgoing] = []
        for message in batch:
            try:
                outgoing.extend(self.handler.handle([message]))
            except HANDLER_ERRORS as exc:
                outgoing.append(self._unhandled(message, exc))
        return outgoing

    def _unhandled(self, message: Message, exc: BaseException) -> Outgoing:
        from mlprep.runtime.core import describe_exception

        return dead_letter(
            self.dead_topic, message, Stage.HANDLE, f"handling the message raised {describe_exception(exc)}"
        )

    def _fit(self, item: Outgoing) -> Outgoing:
        """``item`` within the producer's message.max.bytes: an output too large is replaced by the dead
        letter of its message; a dead letter too large keeps its headers and the start of its value."""
        budget = self.max_bytes - HEADROOM_BYTES
        size = _size(item)
        if size <= budget:
            return item
        if not item.dead and item.source is not None:
            reason = (
                f"the output ({size} bytes) is larger than the producer's message.max.bytes ({self.max_bytes}):"
                " make it smaller, or raise message.max.bytes in KAFKA_PRODUCER_CONFIG (and the topic's"
                " max.message.bytes)"
            )
            item = dead_letter(self.dead_topic, item.source, Stage.PRODUCE, reason)
            size = _size(item)
        if not item.dead or size <= budget:
            return item
        headers = [*item.headers, (TRUNCATED_HEADER, str(len(item.value)).encode())]
        keep = max(budget - (size - len(item.value)) - _header_size(headers[-1]), 0)
        log.warning(
            "%s: the dead letter of %s[%s]@%s (%d bytes) is cut to %d bytes to fit message.max.bytes (%d)",
            self.name,
            *(item.source.topic(), item.source.partition(), item.source.offset()) if item.source else ("?", "?", "?"),
            len(item.value),
            keep,
            self.max_bytes,
        )
        return replace(item, value=item.value[:keep], headers=headers)

    def _commit(self, consumer: Consumer, batch: list[Message]) -> None:
        offsets: dict[tuple[str, int], int] = {}
        for message in batch:
            key = (message.topic(), message.partition())
            offsets[key] = max(offsets.get(key, -1), message.offset())
        try:
            consumer.commit(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in offsets.items()], asynchronous=False)
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is None or not (error.retriable() or error.code() in _REBALANCE_CODES):
                raise
            # Every output is acknowledged: the batch is only read again (at least once), nothing is lost.
            log.warning("%s: commit failed (%s); these messages will be read again", self.name, error)
        else:
            self.state["committed_batches"] += 1

    def _account(self, batch: list[Message], outgoing: list[Outgoing]) -> None:
        """Each message counted once: dead-lettered (if any of it was), out (if it produced), else dropped."""
        dead = {id(item.source) for item in outgoing if item.dead}
        out = {id(item.source) for item in outgoing if not item.dead} - dead
        dead_count = sum(id(message) in dead for message in batch)
        out_count = sum(id(message) in out for message in batch)
        self.state["consumed"] += len(batch)
        self.state["dead_lettered"] += dead_count
        self.state["out"] += out_count
        self.state["dropped"] += len(batch) - dead_count - out_count
        self.state["produced"] += sum(not item.dead for item in outgoing)
        self.state["truncated"] += sum(any(name == TRUNCATED_HEADER for name, _ in item.headers) for item in outgoing)

    def _produce(self, producer: Producer, outgoing: list[Outgoing], attempts: int = 3) -> None:
        pending = outgoing
        failed: list[tuple[Outgoing, KafkaError]] = []
        for _attempt in range(attempts):
            failed = []
            for item in pending:
                self._send(producer, item, failed.append)
            remaining = producer.flush(60)
            if remaining:  # still queued: committing now could lose them
                raise DeliveryError(
                    f"{remaining} records not acknowledged by Kafka within 60 s; the batch is not committed"
                )
            if not failed:
                return
            log.warning("%s: %d records not acknowledged (%s), retrying", self.name, len(failed), failed[0][1])
            pending = [item for item, _error in failed]
        raise DeliveryError(
            f"{len(pending)} records could not be written to Kafka ({failed[0][1]}); the batch is not committed"
        )

    @staticmethod
    def _send(producer: Producer, item: Outgoing, on_failure: Callable[[tuple[Outgoing, KafkaError]], None]) -> None:
        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                on_failure((item, error))

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


_REBALANCE_CODES = {
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError._ASSIGNMENT_LOST,
    KafkaError._NO_OFFSET,
}


def _header_size(header: tuple[str, bytes | None]) -> int:
    """Bytes of one header in a record, varint lengths counted at their widest."""
    name, value = header
    return len(name.encode()) + len(value or b"") + 10


def _size(item: Outgoing) -> int:
    """What librdkafka weighs against message.max.bytes: key, value and headers."""
    return len(item.value) + len(item.key or b"") + sum(map(_header_size, item.headers))
