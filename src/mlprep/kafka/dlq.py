"""Dead-letter topics you can act on: a summary by stage and error, and a replay to the input topic.

A replayed message carries ``mlprep-replayed`` (the dead letter it comes from, ``topic/partition/offset``);
its headers follow it into a new dead letter if it fails again, and such a dead letter is never replayed:
a record that keeps failing cannot go round in a loop.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from mlprep.errors import MlprepError
from mlprep.kafka import config
from mlprep.settings import Settings

REPLAYED_HEADER = "mlprep-replayed"
# What the loop adds to a dead letter: dropped when it is replayed (the message goes back as it came).
_LETTER_HEADERS = {
    "mlprep-error",
    "mlprep-error-stage",
    "mlprep-error-time",
    "mlprep-source-topic",
    "mlprep-source-partition",
    "mlprep-source-offset",
    "mlprep-truncated",
}


def read_topic(settings: Settings, topic: str, wait: float = 10.0) -> Iterator[Message]:
    """Every message now in ``topic``, partition by partition; no group, nothing committed."""
    consumer = Consumer({**config.consumer(settings, f"mlprep-dump-{uuid.uuid4().hex}"), "enable.partition.eof": True})
    try:
        deadline = time.monotonic() + wait
        while True:
            metadata = consumer.list_topics(topic, timeout=5).topics.get(topic)
            if metadata is not None and metadata.error is None and metadata.partitions:
                break
            if time.monotonic() > deadline:
                raise KafkaException(f"topic {topic} not found")
            time.sleep(0.2)
        partitions = sorted(metadata.partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        remaining = set(partitions)
        while remaining:
            message = consumer.poll(5)
            if message is None:
                break
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    remaining.discard(message.partition())
                continue
            yield message
    finally:
        consumer.close()


@dataclass(frozen=True, slots=True)
class Letter:
    """One dead letter: the original message (key, value, its own headers) and why it failed."""

    message: Message
    headers: dict[str, str]

    @property
    def stage(self) -> str:
        return self.headers.get("mlprep-error-stage", "?")

    @property
    def error(self) -> str:
        return self.headers.get("mlprep-error", "?")

    @property
    def time(self) -> datetime:
        """When it was dead-lettered (the message's timestamp for letters older than the header)."""
        text = self.headers.get("mlprep-error-time")
        if text:
            return datetime.fromisoformat(text)
        return datetime.fromtimestamp(self.message.timestamp()[1] / 1000, UTC)

    @property
    def where(self) -> str:
        return f"{self.message.topic()}/{self.message.partition()}/{self.message.offset()}"


def letters(settings: Settings, topic: str) -> Iterator[Letter]:
    for message in read_topic(settings, topic):
        headers = {name: (value or b"").decode("utf-8", "replace") for name, value in message.headers() or []}
        yield Letter(message, headers)


def summary(found: list[Letter]) -> str:
    """Counts by stage, then by stage and error (the error's first 160 characters), most frequent first."""
    if not found:
        return "no dead letters"
    lines = [f"{len(found)} dead letters"]
    by_stage = Counter(letter.stage for letter in found)
    lines += [f"  stage {stage}: {n}" for stage, n in by_stage.most_common()]
    replays = sum(REPLAYED_HEADER in letter.headers for letter in found)
    truncated = sum("mlprep-truncated" in letter.headers for letter in found)
    lines.append(f"  failed again after a replay: {replays}; truncated (not replayable): {truncated}")
    lines.append(f"  from {min(x.time for x in found).isoformat()} to {max(x.time for x in found).isoformat()}")
    lines.append("by stage and error:")
    errors = Counter((letter.stage, " ".join(letter.error.split())[:160]) for letter in found)
    lines += [f"  {n:>7}  {stage:<10} {error}" for (stage, error), n in errors.most_common()]
    return "\n".join(lines)


@dataclass(slots=True)
class Replayed:
    sent: int = 0
    skipped_replays: int = 0  # dead letters of a replay: never replayed again
    skipped_truncated: int = 0
    filtered: int = 0  # not of the stage, or older than --since


def replay(
    settings: Settings, topic: str, to: str, stage: str | None = None, since: datetime | None = None
) -> Replayed:
    """Sends the dead letters of ``topic`` (of ``stage``, dead-lettered at or after ``since``) back to
    ``to`` with their key, value and original headers, each marked with ``mlprep-replayed``."""
    done = Replayed()
    producer = Producer(config.producer(settings))
    failures: list[KafkaError] = []
    for letter in letters(settings, topic):
        if (stage and letter.stage != stage) or (since and letter.time < since):
            done.filtered += 1
        elif REPLAYED_HEADER in letter.headers:
            done.skipped_replays += 1
        elif "mlprep-truncated" in letter.headers:
            done.skipped_truncated += 1
        else:
            message = letter.message
            headers = [(n, v) for n, v in message.headers() or [] if n not in _LETTER_HEADERS]
            headers.append((REPLAYED_HEADER, letter.where.encode()))
            producer.produce(
                to,
                message.value(),
                message.key(),
                headers=headers,
                on_delivery=lambda error, _m: failures.append(error) if error else None,
            )
            producer.poll(0)
            done.sent += 1
    remaining = producer.flush(60)
    if remaining or failures:
        raise MlprepError(
            f"{remaining + len(failures)} of {done.sent} replayed records were not acknowledged by Kafka"
            f" ({failures[0] if failures else 'timeout'}): run the replay again (a record may then arrive twice)"
        )
    return done
