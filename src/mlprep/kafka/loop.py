"""Consume a batch, handle it, produce the results, commit: the loop of the processor and the bridge.

At-least-once: a batch's offsets are committed only after every record produced from it (outputs
and dead letters) is acknowledged by the broker. Nothing is flushed per message.

Nothing lost: every consumed message ends counted as ``out`` (it produced outputs), ``dropped`` (the
preprocessing returned nothing for it) or ``dead_lettered``. A message whose handling raises, or
whose output the producer refuses as too large, is dead-lettered; a dead letter too large for
``message.max.bytes`` keeps its headers and a truncated value. An error the loop cannot handle
stops it with state ``failed``: the process must then exit non-zero so its supervisor restarts it.

Backpressure, not dead letters: a handler raises ``Backpressure`` when what it needs is down (the model
server), and the producer's broker errors count the same. The loop then pauses its partitions, keeps
polling (so it stays in its consumer group however long the outage), retries the same batch with capped
exponential backoff, and resumes where it stopped. Only past ``retry_timeout`` (none by default) is a
batch given up: dead-lettered if the handler could not handle it, the process stopped (uncommitted) if
Kafka could not take it.

Exactly-once (a producer with a ``transactional.id``): a batch's outputs, its dead letters and its
consumed offsets go in one transaction. A failed transaction is aborted and the batch sent again in a
new one; a rebalance that took the batch's partitions away aborts it and leaves the batch to their new
owner. A restarted process with the same transactional.id fences the one it replaces.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from mlprep.errors import MlprepError
from mlprep.kafka import config
from mlprep.kafka.metrics import LoopMetrics
from mlprep.redaction import redact
from mlprep.runtime.outcomes import Stage
from mlprep.settings import Settings

log = logging.getLogger("mlprep.kafka")
T = TypeVar("T")
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


class Backpressure(Exception):
    """Raised by a handler when a dependency is down: the batch is retried later, never dead-lettered."""

    def __init__(self, waiting_for: str, stage: Stage, error: str) -> None:
        super().__init__(error)
        self.waiting_for, self.stage, self.error = waiting_for, stage, error


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Capped exponential backoff; ``timeout`` seconds (None: forever) before a batch is given up."""

    first_delay: float = 0.2
    max_delay: float = 10.0
    timeout: float | None = None


@dataclass(slots=True)
class _Delivery:
    """The records of one batch on their way to Kafka that are still to be sent."""

    to_send: list[Outgoing]


class _Interrupted(Exception):
    """The loop was stopped while it waited: the batch is left uncommitted (it will be read again)."""


class Handler(Protocol):
    """Turns a batch into outgoing records. It may also have ``start()`` and ``stop()`` (called when the
    loop starts and ends: the model's alias watcher), ``health()`` (a dict added to the loop's) and
    ``collectors`` (added to its ``/metrics``)."""

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
        ("mlprep-error-time", datetime.now(UTC).isoformat(timespec="milliseconds").encode()),
    ]
    return Outgoing(topic, message.value() or b"", message.key(), headers, dead=True, source=message)


def stream_topics(settings: Settings, what: str) -> tuple[str, str, str]:
    """INPUT_TOPIC, OUTPUT_TOPIC and the dead-letter topic (default ``<INPUT_TOPIC>-dlq``)."""
    if not settings.input_topic or not settings.output_topic:
        raise MlprepError(f"{what} needs INPUT_TOPIC and OUTPUT_TOPIC")
    return settings.input_topic, settings.output_topic, settings.dead_letter_topic or f"{settings.input_topic}-dlq"


def stream_loop(
    name: str,
    settings: Settings,
    handler: Handler,
    default_group: str,
    run_id: str | None = None,
    worker: int | None = None,
) -> BatchLoop:
    """The loop of a front end from INPUT_TOPIC, in CONSUMER_GROUP_ID (else ``default_group``); its dead
    letters name ``run_id`` (else MLFLOW_RUN_ID) in ``mlprep-run-id`` unless their message already does.
    ``worker``: its number among ``--workers`` processes (it names its transactional.id)."""
    group = settings.consumer_group_id or default_group
    consumer = config.consumer(settings, group)
    producer = config.producer(settings, config.transactional_id(settings, group, worker))
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
        RetryPolicy(
            settings.bridge_retry_delay_ms / 1000,
            max(settings.retry_max_delay_ms, settings.bridge_retry_delay_ms) / 1000,
            settings.retry_timeout_s,
        ),
        run_id or settings.mlflow_run_id,
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
        retry: RetryPolicy | None = None,
        run_id: str | None = None,
    ) -> None:
        self.run_id = run_id
        self.retry = retry or RetryPolicy()
        self._held: list[Message] = []  # messages polled while waiting: handled next, never skipped
        self._undelivered: list[tuple[Message, KafkaError]] = []  # refused by Kafka since the last flush
        self.name, self.topic, self.handler, self.dead_topic = name, topic, handler, dead_topic
        self.consumer_config, self.producer_config = consumer_config, producer_config
        self.batch_size, self.timeout = batch_size, batch_timeout_ms / 1000
        self.max_bytes = int(producer_config.get("message.max.bytes", DEFAULT_MESSAGE_MAX_BYTES))
        self.transactional = bool(producer_config.get("transactional.id"))
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
            "guarantee": "exactly-once" if producer_config.get("transactional.id") else "at-least-once",
            "aborted_transactions": 0,
            "lag": None,
            "lag_by_partition": {},
            "dead_by_stage": {},
            "partitions": [],
            "error": None,
            "rebalances": 0,  # partition assignments received (the first one included)
            "waiting": None,  # while backpressure holds: what for, since when, the last error
            "retries": 0,
            "waited_seconds": 0.0,
            "seconds": {"consume": 0.0, "handle": 0.0, "produce": 0.0, "commit": 0.0},
        }
        self._lag_checked = 0.0
        self.metrics = LoopMetrics(self.health, tuple(getattr(handler, "collectors", ())))

    def stop(self) -> None:
        self._stop.set()

    def health(self) -> dict[str, Any]:
        extra = getattr(self.handler, "health", None)
        return {**self.state, **extra()} if extra else dict(self.state)

    @property
    def failed(self) -> bool:
        return self.state["state"] == "failed"

    def run(self) -> None:
        """Blocks until stopped; raises on a fatal error (nothing of the current batch is committed)."""
        try:
            consumer = Consumer(self.consumer_config)
            # Delivery reports for failures only: no Python call per acknowledged record.
            producer = Producer(
                {**self.producer_config, "delivery.report.only.error": True, "on_delivery": self._on_undelivered}
            )
            if self.transactional:  # fences a predecessor with the same transactional.id, aborts its transaction
                producer.init_transactions(TRANSACTION_CALL_TIMEOUT_S)
        except BaseException as exc:
            self._fail(exc)
            raise
        try:
            _call(self.handler, "start")
            consumer.subscribe([self.topic], on_assign=self._assigned, on_revoke=self._revoked)
            self.state["state"] = "running"
            seconds = self.state["seconds"]
            while not self._stop.is_set():
                begin = time.perf_counter()
                if self._held:
                    messages, self._held = self._held[: self.batch_size], self._held[self.batch_size :]
                else:
                    messages = consumer.consume(num_messages=self.batch_size, timeout=self.timeout)
                seconds["consume"] += time.perf_counter() - begin
                batch = [m for m in messages if self._usable(m)]
                if batch:
                    self._process(batch, consumer, producer)
                self._measure_lag(consumer)
            self.state["state"] = "stopping"
        except _Interrupted:
            self.state["state"] = "stopping"
        except BaseException as exc:
            self._fail(exc)
            raise
        finally:
            _call(self.handler, "stop")
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
        outgoing = self._patiently(
            consumer,
            lambda: [self._fit(self._stamp(item)) for item in self._handle(batch)],
            lambda exc: [self._fit(self._stamp(dead_letter(self.dead_topic, m, exc.stage, exc.error))) for m in batch],
        )
        handled = time.perf_counter()
        seconds["handle"] += handled - begin
        if self.transactional:
            if not self._patiently(consumer, lambda: self._transact(producer, consumer, batch, outgoing), None):
                return  # the batch's partitions went to another consumer: it handles them again
            seconds["produce"] += time.perf_counter() - handled
        else:
            delivery = _Delivery(list(outgoing))
            self._patiently(consumer, lambda: self._produce(producer, delivery), None)
            produced = time.perf_counter()
            seconds["produce"] += produced - handled
            self._commit(consumer, batch)
            seconds["commit"] += time.perf_counter() - produced
        self._account(batch, outgoing)
        self.metrics.batch_size.observe(len(batch))
        self.metrics.batch_seconds.observe(time.perf_counter() - begin)

    def _patiently(
        self, consumer: Consumer, attempt: Callable[[], T], give_up: Callable[[Backpressure], T] | None
    ) -> T:
        """``attempt()``, retried while it raises ``Backpressure``: the partitions paused, the consumer
        polled (it stays in its group), capped exponential backoff. Past the retry timeout, ``give_up``
        (None: the error stops the loop, the batch uncommitted)."""
        try:
            return attempt()
        except Backpressure as exc:
            failure = exc
        consumer.pause(consumer.assignment())
        since, delay = time.monotonic(), self.retry.first_delay
        self.state.update(ready=False)
        log.warning("%s: waiting for %s (%s); partitions paused", self.name, failure.waiting_for, failure.error)
        try:
            while True:
                waited = time.monotonic() - since
                self.state["waiting"] = {
                    "for": failure.waiting_for,
                    "since": datetime.fromtimestamp(time.time() - waited, UTC).isoformat(timespec="seconds"),
                    "seconds": round(waited, 1),
                    "error": redact(failure.error)[:500],
                    "retries": self.state["retries"],
                }
                if self.retry.timeout is not None and waited >= self.retry.timeout:
                    log.error("%s: %s still down after %.0f s: giving up", self.name, failure.waiting_for, waited)
                    if give_up is None:
                        raise DeliveryError(
                            f"{failure.error}; still failing after {waited:.0f} s (RETRY_TIMEOUT_S): the records"
                            " could not be written to Kafka and the batch is not committed"
                        )
                    return give_up(failure)
                self._wait(consumer, delay)
                if self._stop.is_set():
                    raise _Interrupted
                delay = min(delay * 2, self.retry.max_delay)
                self.state["retries"] += 1
                log.warning("%s: retry %d (%s)", self.name, self.state["retries"], failure.waiting_for)
                try:
                    result = attempt()
                except Backpressure as exc:
                    failure = exc
                    continue
                log.warning("%s: %s is back after %.1f s; partitions resumed", self.name, failure.waiting_for, waited)
                return result
        finally:
            self.state["waited_seconds"] += time.monotonic() - since
            self.state.update(waiting=None, ready=bool(self.state["partitions"]) and not self.failed)
            with contextlib.suppress(KafkaException):  # what is still assigned (a rebalance may have come)
                consumer.resume(consumer.assignment())

    def _wait(self, consumer: Consumer, seconds: float) -> None:
        """Sleep ``seconds`` while polling: heartbeats, rebalances and max.poll.interval.ms are served.
        A message polled meanwhile (a partition assigned during the wait) is held for later, not lost."""
        end = time.monotonic() + seconds
        while not self._stop.is_set() and (left := end - time.monotonic()) > 0:
            self._held.extend(m for m in consumer.consume(self.batch_size, timeout=min(left, 0.5)) if self._usable(m))

    def _handle(self, batch: list[Message]) -> list[Outgoing]:
        """The handler's outgoing records; a message whose handling raises is dead-lettered alone (the
        batch is handled again one message at a time to find it), so no message stops the loop."""
        try:
            return self.handler.handle(batch)
        except Backpressure:
            raise
        except HANDLER_ERRORS as exc:
            if len(batch) == 1:
                return [self._unhandled(batch[0], exc)]
            log.warning("%s: a batch of %d raised %s; handling it one message at a time", self.name, len(batch), exc)
        outgoing: list[Outgoing] = []
        for message in batch:
            try:
                outgoing.extend(self.handler.handle([message]))
            except Backpressure:
                raise
            except HANDLER_ERRORS as exc:
                outgoing.append(self._unhandled(message, exc))
        return outgoing

    def _unhandled(self, message: Message, exc: BaseException) -> Outgoing:
        from mlprep.runtime.core import describe_exception

        return dead_letter(
            self.dead_topic, message, Stage.HANDLE, f"handling the message raised {describe_exception(exc)}"
        )

    def _stamp(self, item: Outgoing) -> Outgoing:
        """A dead letter names the run whose code handled it (unless its message already names one)."""
        if item.dead and self.run_id and all(name != "mlprep-run-id" for name, _ in item.headers):
            item.headers.append(("mlprep-run-id", self.run_id.encode()))
        return item

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

    def _transact(self, producer: Producer, consumer: Consumer, batch: list[Message], outgoing: list[Outgoing]) -> bool:
        """The batch's outputs and offsets in one transaction: True once committed; False when a
        rebalance took its partitions (aborted, rewound, left to their new owner). Any other failure
        aborts it and raises ``Backpressure`` (it is sent again); a fatal one (fenced) stops the loop."""
        self._undelivered.clear()  # the whole batch goes in this transaction
        producer.begin_transaction()
        try:
            for item in outgoing:
                self._send(producer, item)  # a failed delivery fails the commit below
            producer.flush(TRANSACTION_CALL_TIMEOUT_S)  # outputs on the broker before the offsets go in
            producer.send_offsets_to_transaction(
                _next_offsets(batch), consumer.consumer_group_metadata(), TRANSACTION_CALL_TIMEOUT_S
            )
            self._commit_transaction(producer)
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is None or error.fatal():
                raise
            with contextlib.suppress(KafkaException):
                producer.abort_transaction(TRANSACTION_CALL_TIMEOUT_S)
            self.state["aborted_transactions"] += 1
            if error.code() in _REBALANCE_CODES:
                log.warning("%s: transaction aborted by a rebalance (%s); the batch is read again", self.name, error)
                self._rewind(consumer, batch)
                return False
            raise Backpressure("Kafka", Stage.PRODUCE, f"transaction aborted: {error}") from exc
        self.state["committed_batches"] += 1
        return True

    def _commit_transaction(self, producer: Producer) -> None:
        """``commit_transaction``, called again while it fails with a retriable error (the broker is slow
        to answer): the commit stays under way and the next call waits for its outcome, as librdkafka
        advises. Aborting instead would fail (a commit is in progress) and so would the next batch's
        ``begin_transaction``. Other errors go to the caller, which aborts."""
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                producer.commit_transaction(TRANSACTION_CALL_TIMEOUT_S)
                return
            except KafkaException as exc:
                error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                if error is None or not error.retriable() or error.txn_requires_abort() or attempt == COMMIT_ATTEMPTS:
                    raise
                self.state["retries"] += 1
                log.warning(
                    "%s: the transaction's commit is not confirmed yet (%s); waiting for it again (%d/%d)",
                    self.name,
                    error,
                    attempt,
                    COMMIT_ATTEMPTS,
                )

    def _rewind(self, consumer: Consumer, batch: list[Message]) -> None:
        """Reads the batch again from its first offsets on the partitions still assigned (the others'
        new owner starts from the committed offsets); what was held for those partitions is re-read too."""
        assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        first: dict[tuple[str, int], int] = {}
        for message in batch:
            key = (message.topic(), message.partition())
            first[key] = min(first.get(key, message.offset()), message.offset())
        rewound = set(first)
        self._held = [m for m in self._held if (m.topic(), m.partition()) not in rewound]
        for (topic, partition), offset in first.items():
            if (topic, partition) in assigned:
                with contextlib.suppress(KafkaException):
                    consumer.seek(TopicPartition(topic, partition, offset))

    def _commit(self, consumer: Consumer, batch: list[Message]) -> None:
        try:
            consumer.commit(offsets=_next_offsets(batch), asynchronous=False)
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
        stages = self.state["dead_by_stage"]
        for item in outgoing:
            if item.dead:
                stage = dict(item.headers).get("mlprep-error-stage", b"?").decode()
                stages[stage] = stages.get(stage, 0) + 1
        self.state["out"] += out_count
        self.state["dropped"] += len(batch) - dead_count - out_count
        self.state["produced"] += sum(not item.dead for item in outgoing)
        self.state["truncated"] += sum(any(name == TRUNCATED_HEADER for name, _ in item.headers) for item in outgoing)

    def _produce(self, producer: Producer, delivery: _Delivery) -> None:
        """Sends what ``delivery`` has not sent yet and waits for the acknowledgements; what Kafka refused
        is sent again at the next attempt, after ``Backpressure`` (a fatal error stops the loop)."""
        sending, delivery.to_send = delivery.to_send, []
        self._undelivered.clear()
        for item in sending:
            self._send(producer, item)
        remaining = producer.flush(10)
        failed, self._undelivered = self._undelivered, []
        for _message, error in failed:
            if error.fatal():
                raise KafkaException(error)
        delivery.to_send.extend(
            Outgoing(m.topic() or "", m.value() or b"", m.key(), list(m.headers() or [])) for m, _error in failed
        )
        if failed:
            raise Backpressure("Kafka", Stage.PRODUCE, f"{len(failed)} records not acknowledged: {failed[0][1]}")
        if remaining:  # still queued in the producer: committing now could lose them
            raise Backpressure("Kafka", Stage.PRODUCE, f"{remaining} records not acknowledged yet")

    def _on_undelivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._undelivered.append((message, error))

    @staticmethod
    def _send(producer: Producer, item: Outgoing) -> None:
        while True:
            try:
                producer.produce(item.topic, item.value, item.key, headers=item.headers)
                return
            except BufferError:  # the local queue is full: let deliveries drain
                producer.poll(0.1)

    def _assigned(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.state["partitions"] = sorted({*self.state["partitions"], *(p.partition for p in partitions)})
        self.state["rebalances"] += 1
        self.state["ready"] = self.state["waiting"] is None
        log.info("%s: partitions assigned: %s", self.name, [p.partition for p in partitions])

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
            by_partition = {}
            for position in positions:
                # The high watermark of the last fetch response: asking the broker blocks the loop for a
                # round trip per partition (0.4 s each on some brokers), which would cost more than the work.
                _low, high = consumer.get_watermark_offsets(position, cached=True)
                if high < 0:  # not fetched yet
                    continue
                behind = max(high - position.offset, 0) if position.offset >= 0 else max(high, 0)
                by_partition[position.partition] = behind
            self.state.update(lag=sum(by_partition.values()), lag_by_partition=by_partition)
        except KafkaException as exc:
            log.debug("lag unknown: %s", exc)


# How long one transactional call (init, send offsets, commit, abort) may take before it is retried.
TRANSACTION_CALL_TIMEOUT_S = 30
COMMIT_ATTEMPTS = 4  # a transaction's commit is waited for up to 4 x 30 s before it is given up (aborted)


def _call(handler: Handler, name: str) -> None:
    """``handler.start()`` or ``handler.stop()``, if it has one."""
    method = getattr(handler, name, None)
    if method is not None:
        method()


def _next_offsets(batch: list[Message]) -> list[TopicPartition]:
    """The offsets to commit after ``batch``: one past its last message on each partition."""
    offsets: dict[tuple[str, int], int] = {}
    for message in batch:
        key = (message.topic(), message.partition())
        offsets[key] = max(offsets.get(key, -1), message.offset())
    return [TopicPartition(t, p, o + 1) for (t, p), o in offsets.items()]


_REBALANCE_CODES = {
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError._ASSIGNMENT_LOST,
    KafkaError._NO_OFFSET,
    KafkaError.FENCED_INSTANCE_ID,
}


def _header_size(header: tuple[str, bytes | None]) -> int:
    """Bytes of one header in a record, varint lengths counted at their widest."""
    name, value = header
    return len(name.encode()) + len(value or b"") + 10


def _size(item: Outgoing) -> int:
    """What librdkafka weighs against message.max.bytes: key, value and headers."""
    return len(item.value) + len(item.key or b"") + sum(map(_header_size, item.headers))
