"""Read a whole topic from the beginning to its current end (for check_kafka_topic.sh and tests)."""

from __future__ import annotations

from collections.abc import Iterator

from mlprep.kafka.dlq import read_topic
from mlprep.settings import Settings


def dump_topic(settings: Settings, topic: str, wait: float = 10.0) -> Iterator[tuple[bytes | None, bytes | None]]:
    """(key, value) of every message now in ``topic``, partition by partition; no group, nothing committed."""
    for message in read_topic(settings, topic, wait):
        yield message.key(), message.value()
