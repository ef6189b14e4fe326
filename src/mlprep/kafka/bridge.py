"""The Kafka bridge: batches of INPUT_TOPIC records -> a model server's /invocations -> OUTPUT_TOPIC.

Each prediction goes out with the key of its input record and the chosen pass-through fields. A
model server that is down, answers 5xx or answers something unreadable is retried with exponential
backoff; then the batch goes to the dead-letter topic, as does a batch it refuses (4xx) or answers
with the wrong number of predictions. Offsets are committed only after the produced records are
acknowledged. The URL's credentials never reach a log line or a header.
"""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

import httpx
from confluent_kafka import Message

from mlprep.kafka.framing import MessageDecoder, MessageEncoder
from mlprep.kafka.loop import BatchLoop, Outgoing, dead_letter, stream_loop, stream_topics
from mlprep.kafka.records import decode_batch
from mlprep.redaction import redact, redact_logs
from mlprep.runtime.outcomes import Stage
from mlprep.runtime.serialization import dumps
from mlprep.settings import Settings

log = logging.getLogger("mlprep.kafka")


class ModelServerError(Exception):
    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class BridgeHandler:
    def __init__(self, settings: Settings, decoder: MessageDecoder, encoder: MessageEncoder, dead_topic: str) -> None:
        self.url = settings.api_url.rstrip("/") + "/" + settings.api_endpoint.lstrip("/")
        self.shown_url = redact(self.url)  # the URL as it may appear in errors and logs
        self.payload_format = settings.bridge_payload_format
        self.passthrough = settings.passthrough_fields
        self.retries, self.delay = settings.bridge_max_retries, settings.bridge_retry_delay_ms / 1000
        self.output_topic = settings.output_topic or ""
        self.decoder, self.encoder, self.dead_topic = decoder, encoder, dead_topic
        self.client = httpx.Client(timeout=60)

    def handle(self, messages: list[Message]) -> list[Outgoing]:
        objects_only = self.payload_format == "dataframe_records"  # instances/inputs may be any JSON value
        records, origins, out = decode_batch(messages, self.decoder, self.dead_topic, objects_only)
        if not records:
            return out
        try:
            predictions = self._predict(records)
        except ModelServerError as exc:
            unique = {id(message): message for message in origins}.values()
            out.extend(dead_letter(self.dead_topic, message, Stage.MODEL, str(exc)) for message in unique)
            return out
        failed: set[int] = set()
        for record, message, prediction in zip(records, origins, predictions, strict=True):
            kept = {name: record.get(name) for name in self.passthrough} if isinstance(record, dict) else {}
            try:
                value = self.encoder.encode({**kept, "prediction": prediction})
            except Exception as exc:
                if id(message) not in failed:
                    failed.add(id(message))
                    out.append(dead_letter(self.dead_topic, message, Stage.SERIALIZE, f"{type(exc).__name__}: {exc}"))
                continue
            headers = list(message.headers() or [])
            out.append(Outgoing(self.output_topic, value, message.key(), headers, source=message))
        return out

    def _predict(self, records: list[Any]) -> list[Any]:
        body = dumps({self.payload_format: records})
        delay = self.delay
        for attempt in range(self.retries + 1):
            try:
                return self._call(body, len(records))
            except ModelServerError as exc:
                if not exc.retryable or attempt == self.retries:
                    raise
                log.warning("model server: %s; retry %d/%d in %.1f s", exc, attempt + 1, self.retries, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
        raise AssertionError("unreachable")

    def _call(self, body: bytes, expected: int) -> list[Any]:
        url = self.shown_url
        try:
            answer = self.client.post(self.url, content=body, headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:  # unreachable, timed out, or a body that cannot be read
            raise ModelServerError(
                f"{url} unreachable: {type(exc).__name__}: {redact(str(exc))}", retryable=True
            ) from exc
        text = redact(answer.text[:2000])
        if answer.status_code >= 500:
            raise ModelServerError(f"{url} answered {answer.status_code}: {text[:500]}", retryable=True)
        if answer.status_code >= 400:
            raise ModelServerError(f"{url} refused the batch ({answer.status_code}): {text}", retryable=False)
        try:
            predictions = _predictions(answer.json())
        except ValueError as exc:  # not JSON (an HTML error page from a proxy...), or columns of unequal length
            raise ModelServerError(
                f"{url} answered {answer.status_code} with an unreadable body ({exc}): {text[:500]}", retryable=True
            ) from exc
        if len(predictions) != expected:
            raise ModelServerError(
                f"{url} answered {len(predictions)} predictions for {expected} records", retryable=False
            )
        return predictions


def _predictions(payload: Any) -> list[Any]:
    """The predictions of an MLflow answer: a list, ``{"predictions": [...]}`` or a DataFrame as columns."""
    predictions = payload.get("predictions", payload) if isinstance(payload, dict) else payload
    if isinstance(predictions, dict):  # a DataFrame answer: {"column": [...]} -> one dict per row
        if not all(isinstance(column, list) for column in predictions.values()):
            raise ValueError("predictions are neither a list nor columns of lists")
        predictions = [dict(zip(predictions, row, strict=True)) for row in zip(*predictions.values(), strict=True)]
    if not isinstance(predictions, list):
        raise ValueError(f"predictions are {type(predictions).__name__}, not a list")
    return predictions


def build_bridge(settings: Settings) -> BatchLoop:
    _, _, dead = stream_topics(settings, "the bridge")
    encoder = MessageEncoder(settings.output_format, settings.output_avro_schema_path, settings.output_avro_framing)
    handler = BridgeHandler(settings, MessageDecoder.from_settings(settings), encoder, dead)
    return stream_loop("bridge", settings, handler, "mlprep-bridge")


def run_bridge(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT, then drain (flush, commit) and exit 0; 1 after an error the loop cannot
    handle (logged by the loop), so that a supervisor restarts the bridge."""
    redact_logs()
    loop = build_bridge(settings)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: loop.stop())
    log.warning(
        "bridge: %s -> %s -> %s",
        settings.input_topic,
        redact(settings.api_url.rstrip("/") + "/" + settings.api_endpoint.lstrip("/")),
        settings.output_topic,
    )
    try:
        loop.run()
    except Exception:
        return 1
    return 0
