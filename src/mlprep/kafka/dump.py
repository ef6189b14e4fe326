"""Read a whole topic from the beginning to its current end (for check_kafka_topic.sh and tests)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from mlprep.kafka import config
from mlprep.settings import Settings


def dump_topic(settings: Settings, topic: str, wait: float = 10.0) -> Iterator[tuple[bytes | None, bytes | None]]:
    """(key, value) of every message now in ``topic``, partition by partition; no group, nothing committed."""
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
            yield message.key(), message.value()
    finally:
        consumer.close()
