"""The Kafka bridge: batches of INPUT_TOPIC records -> a model server's /invocations -> OUTPUT_TOPIC.

Each prediction goes out with the key of its input record and the chosen pass-through fields. A
model server that is down (unreachable, timed out, 5xx, 429) is backpressure, never a dead letter:
the loop pauses the partitions and retries the batch until it is back. A batch it refuses (4xx) is
bisected: only the records it refuses are dead-lettered, the others predicted. An answer it cannot
read (200 with an HTML page) is retried BRIDGE_MAX_RETRIES times, then the batch is dead-lettered,
as is a batch answered with the wrong number of predictions. Offsets are committed only after the produced records are
acknowledged. The URL's credentials never reach a log line or a header.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
from confluent_kafka import Message
from prometheus_client import Histogram

from mlprep.kafka.framing import MessageDecoder, MessageEncoder
from mlprep.kafka.loop import Backpressure, BatchLoop, Outgoing, dead_letter, stream_loop, stream_topics
from mlprep.kafka.metrics import SECONDS
from mlprep.kafka.predictions import PredictionWriter, bisect
from mlprep.kafka.records import decode_batch
from mlprep.kafka.serving import health_app, serve_beside
from mlprep.kafka.workers import WorkerPool
from mlprep.redaction import redact, redact_logs
from mlprep.runtime.outcomes import Stage
from mlprep.runtime.serialization import dumps
from mlprep.settings import Settings

log = logging.getLogger("mlprep.kafka")


class ModelServerError(Exception):
    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Refused(ModelServerError):
    """The model server refused the records (4xx): they are bisected down to the ones it refuses."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


# 4xx answers that say "not now" rather than "not this": backpressure, not dead letters.
_RETRY_LATER = {408, 425, 429}


class BridgeHandler:
    def __init__(self, settings: Settings, decoder: MessageDecoder, encoder: MessageEncoder, dead_topic: str) -> None:
        self.url = settings.api_url.rstrip("/") + "/" + settings.api_endpoint.lstrip("/")
        self.shown_url = redact(self.url)  # the URL as it may appear in errors and logs
        self.payload_format = settings.bridge_payload_format
        self.retries, self.delay = settings.bridge_max_retries, settings.bridge_retry_delay_ms / 1000
        self.decoder, self.dead_topic = decoder, dead_topic
        self.writer = PredictionWriter(encoder, settings.output_topic or "", dead_topic, settings.passthrough_fields)
        self.client = httpx.Client(timeout=60)
        self.latency = Histogram(
            "mlprep_kafka_model_request_duration_seconds",
            "Model-server requests by outcome (ok, refused, down, unreadable).",
            ["outcome"],
            buckets=SECONDS,
            registry=None,
        )
        self.collectors = (self.latency,)  # added to the loop's /metrics

    def handle(self, messages: list[Message]) -> list[Outgoing]:
        objects_only = self.payload_format == "dataframe_records"  # instances/inputs may be any JSON value
        records, origins, out = decode_batch(messages, self.decoder, self.dead_topic, objects_only)
        if not records:
            return out
        try:
            predictions, refused = bisect(records, self._predict, Refused)
        except ModelServerError as exc:
            unique = {id(message): message for message in origins}.values()
            out.extend(dead_letter(self.dead_topic, message, Stage.MODEL, str(exc)) for message in unique)
            return out
        failures = {index: (Stage.MODEL, error) for index, error in refused.items()}
        per_record = [[predictions[index]] if index in predictions else [] for index in range(len(records))]
        out.extend(self.writer.outgoing(origins, records, per_record, failures))
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
        begin, outcome = time.perf_counter(), "down"
        try:
            predictions = self._post(body, expected)
            outcome = "ok"
            return predictions
        except Refused:
            outcome = "refused"
            raise
        except ModelServerError:
            outcome = "unreadable"
            raise
        finally:
            self.latency.labels(outcome).observe(time.perf_counter() - begin)

    def _post(self, body: bytes, expected: int) -> list[Any]:
        url = self.shown_url
        try:
            answer = self.client.post(self.url, content=body, headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:  # unreachable, timed out, or a body that cannot be read
            raise Backpressure(
                "the model server", Stage.MODEL, f"{url} unreachable: {type(exc).__name__}: {redact(str(exc))}"
            ) from exc
        text = redact(answer.text[:2000])
        if answer.status_code >= 500 or answer.status_code in _RETRY_LATER:
            raise Backpressure("the model server", Stage.MODEL, f"{url} answered {answer.status_code}: {text[:500]}")
        if answer.status_code >= 400:
            raise Refused(f"{url} refused the records ({answer.status_code}): {text}")
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


def build_bridge(settings: Settings, worker: int | None = None) -> BatchLoop:
    _, _, dead = stream_topics(settings, "the bridge")
    encoder = MessageEncoder(settings.output_format, settings.output_avro_schema_path, settings.output_avro_framing)
    handler = BridgeHandler(settings, MessageDecoder.from_settings(settings), encoder, dead)
    return stream_loop("bridge", settings, handler, "mlprep-bridge", worker=worker)


def run_bridge(settings: Settings, workers: int = 1) -> int:
    """Run until SIGTERM or SIGINT, then drain (flush, commit) and exit 0; 1 after an error the loop cannot
    handle (logged by the loop), so that a supervisor restarts the bridge. ``/health``, ``/ready`` and
    ``/metrics`` answer on API_HOST:BRIDGE_PORT. ``workers`` > 1: that many consumer processes."""
    redact_logs()
    loop = WorkerPool("bridge", build_bridge, settings, workers) if workers > 1 else build_bridge(settings)
    log.warning(
        "bridge: %s -> %s -> %s",
        settings.input_topic,
        redact(settings.api_url.rstrip("/") + "/" + settings.api_endpoint.lstrip("/")),
        settings.output_topic,
    )
    return serve_beside(loop, health_app(loop), settings.api_host, settings.bridge_port, settings.api_access_log)
