"""The stream processor: INPUT_TOPIC (Avro or JSON) -> pre_processing -> OUTPUT_TOPIC, with the REST
API of the same preprocessing in the same process. Bad messages go to the dead-letter topic."""

from __future__ import annotations

import logging

from confluent_kafka import Message

from mlprep.kafka.framing import MessageDecoder, MessageEncoder
from mlprep.kafka.loop import BatchLoop, Headers, Outgoing, dead_letter, stream_loop, stream_topics
from mlprep.kafka.records import decode_batch
from mlprep.kafka.serving import serve_beside
from mlprep.kafka.workers import WorkerPool
from mlprep.redaction import redact_logs
from mlprep.runtime.core import Preprocessor, describe_exception, records_of
from mlprep.runtime.outcomes import Stage
from mlprep.runtime.provenance import Provenance
from mlprep.settings import Settings

log = logging.getLogger("mlprep.kafka")


class PreprocessHandler:
    def __init__(
        self,
        pre: Preprocessor,
        decoder: MessageDecoder,
        encoder: MessageEncoder,
        output_topic: str,
        dead_topic: str,
        provenance: Headers,
    ) -> None:
        self.pre, self.decoder, self.encoder = pre, decoder, encoder
        self.output_topic, self.dead_topic, self.provenance = output_topic, dead_topic, provenance

    def handle(self, messages: list[Message]) -> list[Outgoing]:
        records, origins, out = decode_batch(messages, self.decoder, self.dead_topic)
        outputs, failures = self.pre.apply(records)
        for index, value in enumerate(outputs):
            message = origins[index]
            if failures and index in failures:
                error = f"pre_processing raised {describe_exception(failures[index])}"
                out.append(dead_letter(self.dead_topic, message, Stage.PREPROCESS, error))
                continue
            headers = [*(message.headers() or []), *self.provenance]
            try:
                encoded = [self.encoder.encode(item) for item in records_of(value)]
            except Exception as exc:
                out.append(dead_letter(self.dead_topic, message, Stage.SERIALIZE, f"{type(exc).__name__}: {exc}"))
                continue
            out.extend(Outgoing(self.output_topic, item, message.key(), headers, source=message) for item in encoded)
        return out


def provenance_headers(pre: Preprocessor, settings: Settings) -> Headers:
    """``mlprep-run-id``, ``mlprep-model-name``, ``mlprep-model-version`` of every output message."""
    known = Provenance.resolve(settings, pre.loaded.metadata)
    values = {
        "mlprep-run-id": known.run_id,
        "mlprep-model-name": known.model_name,
        "mlprep-model-version": known.model_version,
    }
    return [(name, value.encode()) for name, value in values.items() if value]


def build_processor(settings: Settings, pre: Preprocessor, worker: int | None = None) -> BatchLoop:
    _, target, dead = stream_topics(settings, "the stream processor")
    encoder = MessageEncoder(
        settings.output_format, settings.output_avro_schema_path, settings.output_avro_framing, settings.skip_cutouts
    )
    handler = PreprocessHandler(
        pre, MessageDecoder.from_settings(settings), encoder, target, dead, provenance_headers(pre, settings)
    )
    run_id = Provenance.resolve(settings, pre.loaded.metadata).run_id
    return stream_loop("processor", settings, handler, "mlprep-preprocessing", run_id, worker)


def worker_processor(settings: Settings, index: int, preprocessing: str) -> BatchLoop:
    """The processor of worker ``index`` of ``--workers``: it loads the preprocessing itself."""
    return build_processor(settings, Preprocessor.load(preprocessing, skip_cutouts=settings.skip_cutouts), index)


def serve_with_processor(
    settings: Settings, pre: Preprocessor, host: str, port: int, workers: int = 1, preprocessing: str | None = None
) -> int:
    """The REST API in the main thread (it handles SIGTERM), the processor in another, or in ``workers``
    processes that load ``preprocessing`` themselves; drained on exit. The REST API's ``/metrics``
    includes the processor's."""
    from mlprep.rest.app import create_app

    redact_logs()
    pool = WorkerPool("processor", worker_processor, settings, workers, preprocessing) if workers > 1 else None
    loop = pool or build_processor(settings, pre)
    app = create_app(settings, pre, components={"kafka": loop.health})
    app.state.metrics.include(loop.metrics)
    log.warning(
        "stream processor: %s -> %s (dead letters: %s)",
        settings.input_topic,
        settings.output_topic,
        settings.dead_letter_topic or f"{settings.input_topic}-dlq",
    )
    return serve_beside(loop, app, host, port, settings.api_access_log)
