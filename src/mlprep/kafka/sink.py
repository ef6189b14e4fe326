"""stdout->Kafka (the original "Mode Kafka"): batch-mode JSONL output written to a topic instead."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaException, Producer

from mlprep.errors import MlprepError
from mlprep.kafka import config
from mlprep.runtime.provenance import Provenance
from mlprep.settings import Settings


def output_topic(settings: Settings, metadata: dict[str, str]) -> str:
    """``{model_name}-{version}-{KAFKA_TOPIC_SUFFIX}``, names baked into the image at build time."""
    known = Provenance.resolve(settings, metadata)
    name, version = known.model_name, known.model_version
    if not name or not version:
        raise MlprepError(
            "KAFKA_ENABLED=true without INPUT_TOPIC writes to {model_name}-{version}-"
            "{KAFKA_TOPIC_SUFFIX}, but the model name or version is unknown: set MODEL_NAME and "
            "MODEL_VERSION, or run from an image built by mlprep"
        )
    return f"{name}-{version}-{settings.kafka_topic_suffix}"


class KafkaLineSink:
    """A binary file-like object: each JSONL line written becomes one message; flush waits for acks."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.topic = topic
        self.producer = Producer(config.producer(settings))
        self.sent = 0
        self.failed: list[str] = []
        self._pending = b""

    def write(self, data: bytes) -> int:
        data = self._pending + data
        *lines, self._pending = data.split(b"\n")
        for line in lines:
            if line:
                self._produce(line)
        return len(data)

    def _produce(self, line: bytes) -> None:
        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                self.failed.append(str(error))

        while True:
            try:
                self.producer.produce(self.topic, line, on_delivery=delivered)
                self.sent += 1
                return
            except BufferError:
                self.producer.poll(0.1)
            except KafkaException as exc:  # refused locally, e.g. larger than message.max.bytes
                raise MlprepError(
                    f"output record {self.sent + 1} ({len(line)} bytes) cannot be sent to Kafka topic {self.topic}:"
                    f" {exc.args[0].str() if exc.args else exc}; {self.sent} records were sent before it"
                    " (raise message.max.bytes in KAFKA_PRODUCER_CONFIG for larger records)"
                ) from exc

    def flush(self) -> None:
        if self._pending:
            self._produce(self._pending)
            self._pending = b""
        remaining = self.producer.flush(60)
        if remaining or self.failed:
            raise MlprepError(
                f"{remaining + len(self.failed)} records were not acknowledged by Kafka "
                f"({(self.failed or ['timeout'])[0]})"
            )
