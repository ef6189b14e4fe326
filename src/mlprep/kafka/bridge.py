"""The Kafka bridge: batches of INPUT_TOPIC records -> a model server's /invocations -> OUTPUT_TOPIC.

Each prediction goes out with the key of its input record and the chosen pass-through fields. A
model server that is down or answers 5xx is retried with exponential backoff; then the batch goes
to the dead-letter topic. Offsets are committed only after the produced records are acknowledged.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from confluent_kafka import Message

from mlprep.kafka.framing import MessageDecoder, MessageEncoder
from mlprep.kafka.loop import BatchLoop, Outgoing, dead_letter, stream_loop, stream_topics
from mlprep.kafka.processor import decode_batch
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
        self.payload_format = settings.bridge_payload_format
        self.passthrough = settings.passthrough_fields
        self.retries, self.delay = settings.bridge_max_retries, settings.bridge_retry_delay_ms / 1000
        self.output_topic = settings.output_topic or ""
        self.decoder, self.encoder, self.dead_topic = decoder, encoder, dead_topic
        self.client = httpx.Client(timeout=60)

    def handle(self, messages: list[Message]) -> list[Outgoing]:
        records, origins, out = decode_batch(messages, self.decoder, self.dead_topic)
        if not records:
            return out
        try:
            predictions = self._predict(records)
        except ModelServerError as exc:
            stage = "model-server"
            seen: set[int] = set()
            for message in origins:
                if id(message) not in seen:
                    seen.add(id(message))
                    out.append(dead_letter(self.dead_topic, message, stage, str(exc)))
            return out
        for record, message, prediction in zip(records, origins, predictions, strict=True):
            kept = {name: record.get(name) for name in self.passthrough} if isinstance(record, dict) else {}
            value = self.encoder.encode({**kept, "prediction": prediction})
            out.append(Outgoing(self.output_topic, value, message.key(), list(message.headers() or [])))
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
        try:
            answer = self.client.post(self.url, content=body, headers={"Content-Type": "application/json"})
        except httpx.TransportError as exc:
            raise ModelServerError(f"{self.url} unreachable: {exc}", retryable=True)
        if answer.status_code >= 500:
            raise ModelServerError(f"{self.url} answered {answer.status_code}: {answer.text[:500]}", retryable=True)
        if answer.status_code >= 400:
            raise ModelServerError(
                f"{self.url} refused the batch ({answer.status_code}): {answer.text[:2000]}", retryable=False
            )
        payload = answer.json()
        predictions = payload.get("predictions", payload) if isinstance(payload, dict) else payload
        if isinstance(predictions, dict):  # a DataFrame answer: {"column": [...]} -> one dict per row
            predictions = [dict(zip(predictions, row, strict=True)) for row in zip(*predictions.values(), strict=True)]
        if not isinstance(predictions, list) or len(predictions) != expected:
            raise ModelServerError(
                f"{self.url} answered {len(predictions) if isinstance(predictions, list) else 'no'}"
                f" predictions for {expected} records",
                retryable=False,
            )
        return predictions


def build_bridge(settings: Settings) -> BatchLoop:
    _, _, dead = stream_topics(settings, "the bridge")
    encoder = MessageEncoder(settings.output_format, settings.output_avro_schema_path, settings.output_avro_framing)
    handler = BridgeHandler(settings, MessageDecoder.from_settings(settings), encoder, dead)
    return stream_loop("bridge", settings, handler, "mlprep-bridge")


def serve_health(loop: BatchLoop, host: str, port: int) -> ThreadingHTTPServer:
    """``/health`` (200 unless the loop failed) and ``/ready`` (200 once partitions are assigned) for
    orchestrators' probes: the bridge has no REST API of its own."""

    class Probe(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state = loop.health()
            if self.path == "/health":
                ok = state["state"] != "failed"
            elif self.path == "/ready":
                ok = bool(state["ready"])
            else:
                self.send_error(404, "only /health and /ready")
                return
            body = dumps({"status": "ok" if ok else "unavailable", **state})
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # probes every few seconds: no access log
            pass

    server = ThreadingHTTPServer((host, port), Probe)
    threading.Thread(target=server.serve_forever, name="bridge-health", daemon=True).start()
    return server


def run_bridge(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT, then drain (flush, commit) and exit 0."""
    loop = build_bridge(settings)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: loop.stop())
    if settings.bridge_health_port:
        serve_health(loop, settings.api_host, settings.bridge_health_port)
    log.warning(
        "bridge: %s -> %s%s -> %s", settings.input_topic, settings.api_url, settings.api_endpoint, settings.output_topic
    )
    loop.run()
    return 0
