"""The stream processor: INPUT_TOPIC (Avro or JSON) -> pre_processing -> OUTPUT_TOPIC, with the REST
API of the same preprocessing in the same process. Bad messages go to the dead-letter topic.

With a model (MODEL_URI, ``mlprep kafka --model``), the processor also runs the MLflow model on the
preprocessed records and writes its predictions to OUTPUT_TOPIC, as the bridge does with a model server,
without a bridge in between."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from confluent_kafka import Message

from mlprep.kafka.framing import MessageDecoder, MessageEncoder
from mlprep.kafka.loop import BatchLoop, Headers, Outgoing, dead_letter, stream_loop, stream_topics
from mlprep.kafka.predictions import PredictionWriter, bisect
from mlprep.kafka.records import decode_batch
from mlprep.kafka.serving import serve_beside
from mlprep.kafka.workers import WorkerPool
from mlprep.redaction import redact, redact_logs
from mlprep.runtime.core import Preprocessor, describe_exception, records_of
from mlprep.runtime.outcomes import Stage
from mlprep.runtime.provenance import Provenance
from mlprep.settings import Settings

if TYPE_CHECKING:
    from mlprep.runtime.model import ServedModel

log = logging.getLogger("mlprep.kafka")
# The model that predicted an output (the registered name, or the URI) and its version. The
# ``mlprep-model-*`` headers name the run whose preprocessing made the features.
SERVED_MODEL_HEADER = "mlprep-served-model"
SERVED_VERSION_HEADER = "mlprep-served-version"


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


class PredictHandler:
    """pre_processing then the model, in process: one output per prediction, with the input's key and
    headers, the provenance headers and the model version that predicted. A record that fails decoding
    or ``pre_processing`` is dead-lettered as by ``PreprocessHandler``; a batch the model fails is
    bisected, so that only the messages holding a record it refuses are dead-lettered (stage ``model``).
    The model's alias watcher runs while the loop does."""

    def __init__(
        self,
        pre: Preprocessor,
        model: ServedModel,
        decoder: MessageDecoder,
        writer: PredictionWriter,
        dead_topic: str,
        provenance: Headers,
    ) -> None:
        self.pre, self.model, self.decoder, self.writer = pre, model, decoder, writer
        self.dead_topic, self.provenance = dead_topic, provenance
        info = model.info
        self.served = (SERVED_MODEL_HEADER, (info.name or redact(info.uri)).encode())

    def start(self) -> None:
        self.model.start()

    def stop(self) -> None:
        self.model.stop()

    def health(self) -> dict[str, Any]:
        return {"model": self.model.state()}

    def handle(self, messages: list[Message]) -> list[Outgoing]:
        from mlprep.runtime.inference import predict_records

        records, origins, out = decode_batch(messages, self.decoder, self.dead_topic)
        if not records:
            return out
        inference = predict_records(self.pre, self.model, records)
        predictions, failures, version = inference.predictions, inference.failures, inference.version
        if inference.model_error is not None:
            predictions, refused, version = self._bisect(inference.rows)
            failures = {**refused, **failures}
        headers = [*self.provenance, self.served]
        if version:
            headers.append((SERVED_VERSION_HEADER, version.encode()))
        out.extend(self.writer.outgoing(origins, records, predictions, failures, inference.rows, headers))
        return out

    def _bisect(self, rows: list[list[Any]]) -> tuple[list[list[Any]], dict[int, tuple[Stage, str]], str | None]:
        """The batch the model failed, bisected over its preprocessed records with one model version:
        the predictions and refusals by input record, and that version."""
        from mlprep.runtime.model import ModelError

        served = self.model.current
        flat = [(index, row) for index, made in enumerate(rows) for row in made]
        predicted, refused = bisect([row for _, row in flat], served.predict, ModelError)
        predictions: list[list[Any]] = [[] for _ in rows]
        failures: dict[int, tuple[Stage, str]] = {}
        for position, (index, _row) in enumerate(flat):
            if position in refused:
                failures.setdefault(index, (Stage.MODEL, refused[position]))
            else:
                predictions[index].append(predicted[position])
        self.model.remember([row for position, (_, row) in enumerate(flat) if position not in refused])
        return predictions, failures, served.info.version


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
    decoder, provenance = MessageDecoder.from_settings(settings), provenance_headers(pre, settings)
    handler: PreprocessHandler | PredictHandler
    if settings.model_uri:
        from mlprep.runtime.model import ServedModel

        model = ServedModel(settings.model_uri, settings.model_reload_s)
        writer = PredictionWriter(encoder, target, dead, settings.passthrough_fields)
        handler = PredictHandler(pre, model, decoder, writer, dead, provenance)
    else:
        handler = PreprocessHandler(pre, decoder, encoder, target, dead, provenance)
    run_id = Provenance.resolve(settings, pre.loaded.metadata).run_id
    return stream_loop("processor", settings, handler, "mlprep-preprocessing", run_id, worker)


def worker_processor(settings: Settings, index: int, preprocessing: str) -> BatchLoop:
    """The processor of worker ``index`` of ``--workers``: it loads the preprocessing (and the model)
    itself."""
    return build_processor(settings, Preprocessor.load(preprocessing, skip_cutouts=settings.skip_cutouts), index)


def serve_with_processor(
    settings: Settings, pre: Preprocessor, host: str, port: int, workers: int = 1, preprocessing: str | None = None
) -> int:
    """The REST API in the main thread (it handles SIGTERM), the processor in another, or in ``workers``
    processes that load ``preprocessing`` (and MODEL_URI's model) themselves; drained on exit. The REST
    API's ``/metrics`` includes the processor's, its ``/health`` the model's state."""
    from mlprep.rest.app import create_app

    redact_logs()
    pool = WorkerPool("processor", worker_processor, settings, workers, preprocessing) if workers > 1 else None
    loop = pool or build_processor(settings, pre)
    app = create_app(settings, pre, components={"kafka": loop.health})
    app.state.metrics.include(loop.metrics)
    log.warning(
        "stream processor: %s -> %s%s (dead letters: %s)",
        settings.input_topic,
        f"model {redact(settings.model_uri)} -> " if settings.model_uri else "",
        settings.output_topic,
        settings.dead_letter_topic or f"{settings.input_topic}-dlq",
    )
    return serve_beside(loop, app, host, port, settings.api_access_log)
