"""What a message holds: the records the processor and the bridge work on, or a dead letter saying why
it holds none."""

from __future__ import annotations

from typing import Any

from confluent_kafka import Message

from mlprep.kafka.framing import DecodeError, MessageDecoder
from mlprep.kafka.loop import Outgoing, dead_letter
from mlprep.runtime.outcomes import Stage


def decode_batch(
    messages: list[Message], decoder: MessageDecoder, dead_topic: str, objects_only: bool = True
) -> tuple[list[Any], list[Message], list[Outgoing]]:
    """Records of a batch, the message each came from, and dead letters for the messages that hold no
    record: undecodable, empty (``[]``, an empty container), or, with ``objects_only``, holding
    anything but objects (``3``, ``"x"``, ``[{...}, 3]``: the whole message is refused)."""
    records: list[Any] = []
    origins: list[Message] = []
    dead: list[Outgoing] = []
    for message in messages:
        try:
            decoded = decoder.decode(message.value(), message.key())
            check_records(decoded, objects_only)
        except DecodeError as exc:
            dead.append(dead_letter(dead_topic, message, Stage.DECODE, str(exc)))
            continue
        records.extend(decoded)
        origins.extend([message] * len(decoded))
    return records, origins, dead


def check_records(records: list[Any], objects_only: bool) -> None:
    """A message holds one record or more; a record is an object (a JSON object, an Avro record)."""
    if not records:
        raise DecodeError("the message holds no record (an empty array or Avro container): nothing to process")
    if not objects_only:
        return
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            where = f"item {index} of the message" if len(records) > 1 else "the message"
            raise DecodeError(
                f"{where} is {_kind(record)}, not a record: a message must be a JSON object or an array of objects"
            )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    return f"a {type(value).__name__}"
