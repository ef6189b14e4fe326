"""Predictions to Kafka, for the bridge (a model server) and the processor with a model in process.

Both bisect a batch the model refuses, so that only the records it refuses are dead-lettered, and both
write one output message per prediction: ``{<PASSTHROUGH_FIELDS>..., "prediction": ...}`` with the key
and headers of its input message.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from confluent_kafka import Message

from mlprep.kafka.framing import MessageEncoder
from mlprep.kafka.loop import Outgoing, dead_letter
from mlprep.runtime.outcomes import Stage

T = TypeVar("T")


def bisect(
    items: Sequence[T], predict: Callable[[list[T]], list[Any]], refused: type[Exception]
) -> tuple[dict[int, Any], dict[int, str]]:
    """Predictions by index, and the items the model refuses with its reason: a span ``predict``
    refuses (raises ``refused``) is split in halves until each refused item stands alone. Any other
    exception propagates (backpressure, a whole-batch failure)."""
    predictions: dict[int, Any] = {}
    reasons: dict[int, str] = {}
    spans = [(0, len(items))]
    while spans:
        start, end = spans.pop()
        try:
            predictions.update(enumerate(predict(list(items[start:end])), start))
        except refused as exc:
            if end - start == 1:
                reasons[start] = str(exc)
            else:
                middle = (start + end) // 2
                spans += [(middle, end), (start, middle)]
    return predictions, reasons


class PredictionWriter:
    """The outgoing messages of a predicted batch: one output per prediction, or one dead letter for a
    message any of whose records failed (the message goes whole: none of its predictions is written)."""

    def __init__(self, encoder: MessageEncoder, output_topic: str, dead_topic: str, passthrough: list[str]) -> None:
        self.encoder, self.output_topic, self.dead_topic = encoder, output_topic, dead_topic
        self.passthrough = passthrough

    def outgoing(
        self,
        origins: list[Message],
        records: list[Any],
        predictions: list[list[Any]],
        failures: dict[int, tuple[Stage, str]],
        rows: list[list[Any]] | None = None,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> list[Outgoing]:
        """``predictions[i]`` are those of ``records[i]`` (from message ``origins[i]``), ``rows[i]`` the
        preprocessed records they were made from (pass-through fields missing from the input record are
        taken from them); ``failures`` the records that failed, with stage and reason; ``headers`` are
        added to the input message's own."""
        dead: list[Outgoing] = []
        written: dict[int, list[Outgoing]] = {}  # by message, in order
        gone: set[int] = set()
        for index, record in enumerate(records):
            message = origins[index]
            if id(message) in gone:
                continue
            failure = failures.get(index)
            if failure is None:
                made = rows[index] if rows is not None else [None] * len(predictions[index])
                try:
                    values = [
                        self.encoder.encode({**self._kept(record, row), "prediction": prediction})
                        for row, prediction in zip(made, predictions[index], strict=True)
                    ]
                except Exception as exc:
                    failure = (Stage.SERIALIZE, f"{type(exc).__name__}: {exc}")
            if failure is not None:
                gone.add(id(message))
                written.pop(id(message), None)
                dead.append(dead_letter(self.dead_topic, message, *failure))
                continue
            stamped = [*(message.headers() or []), *headers]
            written.setdefault(id(message), []).extend(
                Outgoing(self.output_topic, value, message.key(), stamped, source=message) for value in values
            )
        return [*dead, *(item for items in written.values() for item in items)]

    def _kept(self, record: Any, row: Any) -> dict[str, Any]:
        """The pass-through fields: from the input record, else from the preprocessed one."""
        sources = [source for source in (record, row) if isinstance(source, dict)]
        if not sources:  # a bridge's record that is not an object (instances, inputs)
            return {}
        return {name: next((source[name] for source in sources if name in source), None) for name in self.passthrough}
