"""What runs on the Spark executors: load the shipped code once per Python worker, apply it to Arrow
batches with ``Preprocessor.apply``, and encode every input record's fate as rows of one Arrow batch.

A mapped batch has the output columns (``value``, a JSON string, or the fields of the output
schema, flat: nested output structs cost the JVM more), then ``__mlprep_failure`` (a failed record:
source, unit, position, stage, error, raw, raw_base64) and ``__mlprep_n_in`` (one row per input chunk
counting its records). The front end splits them with filters.
This module imports only the runtime; pyspark and pyarrow are imported by the functions that need them.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from mlprep.errors import MlprepError
from mlprep.runtime.codecs import detect_codec
from mlprep.runtime.codecs.lines import decode_lines
from mlprep.runtime.core import Preprocessor, describe_exception, records_of
from mlprep.runtime.outcomes import Chunk, Failure, Stage
from mlprep.runtime.serialization import dumps

FAILURE = "__mlprep_failure"
N_IN = "__mlprep_n_in"
FAILURE_FIELDS = ("source", "unit", "position", "stage", "error", "raw", "raw_base64")
# Marks a loading error raised on an executor, so the driver can show it without Spark's wrapping.
MARK = "mlprep-executor-error"


@dataclass(frozen=True)
class Shipped:
    """The user's code as Spark ships it: an archive unpacked on each executor, and the entry file in it."""

    archive: str  # the name Spark unpacks the archive under (SparkFiles.get)
    entry: str  # path of preprocessing.py inside the archive
    skip_cutouts: bool = False
    folder: str | None = None  # a local folder instead of an archive (the driver's own sample runs)


_LOADED: dict[Shipped, Preprocessor] = {}


def preprocessor(shipped: Shipped) -> Preprocessor:
    """The shipped code, imported once per Python worker (Spark reuses its workers across tasks)."""
    pre = _LOADED.get(shipped)
    if pre is None:
        if shipped.folder is not None:
            root = Path(shipped.folder)
        else:
            from pyspark import SparkFiles

            root = Path(SparkFiles.get(shipped.archive))
        pre = Preprocessor.load(root / shipped.entry, skip_cutouts=shipped.skip_cutouts)
        _LOADED[shipped] = pre
    return pre


def probe(shipped: Shipped) -> tuple[str, str] | None:
    """Load the code on an executor: None, or the error's class name and message (for the driver)."""
    try:
        preprocessor(shipped)
    except MlprepError as exc:
        return type(exc).__name__, str(exc)
    return None


def _load_or_raise(shipped: Shipped) -> Preprocessor:
    try:
        return preprocessor(shipped)
    except MlprepError as exc:
        first = str(exc).splitlines()[0]
        raise RuntimeError(f"<{MARK}>{type(exc).__name__}: {first}</{MARK}>") from exc


class Encoder:
    """Turns one input record's outputs into output values: JSON strings, or dicts an Arrow struct takes."""

    def __init__(self, arrow_type: Any | None) -> None:
        self.arrow_type = arrow_type  # None: JSON strings

    def encode(self, outputs: list[Any]) -> list[Any]:
        if self.arrow_type is None:
            return [dumps(item).decode() for item in outputs]
        return outputs

    def check(self, values: list[Any]) -> Any:
        """The Arrow array of ``values`` (None entries are null rows); raises when one does not fit."""
        import pyarrow as pa

        return pa.array(values, type=self.arrow_type if self.arrow_type is not None else pa.string())

    def normalised(self, outputs: list[Any]) -> list[Any]:
        """numpy/pandas values as plain JSON values, the way batch mode writes them."""
        return [orjson.loads(dumps(item)) for item in outputs]


def map_records(
    pre: Preprocessor,
    encoder: Encoder,
    schema: Any,
    records: list[Any],
    places: list[tuple[str, str, int]],
    raws: list[Any],
    failures: list[dict[str, Any]],
    n_in: int,
) -> Any:
    """Apply to ``records`` and return the mapped Arrow batch (``places[i]`` is where record i was).

    The outputs go to Arrow in one call; only when one does not fit the schema are they redone
    record by record, so that the culprits become ``serialize`` failures and the others go through.
    """
    results, errors = pre.apply(records)
    json_output = encoder.arrow_type is None
    per_record: list[tuple[int, list[Any]]] = []
    for index, value in enumerate(results):
        if index in errors:
            message = f"pre_processing raised {describe_exception(errors[index])}"
            failures.append(_failure(places[index], Stage.PREPROCESS, message, raws[index], records[index]))
            continue
        if value is None:
            continue
        try:
            per_record.append((index, encoder.encode(records_of(value))))
        except (TypeError, orjson.JSONEncodeError) as exc:
            message = f"output cannot be serialised to JSON: {exc}"
            failures.append(_failure(places[index], Stage.SERIALIZE, message, raws[index], records[index]))
    try:
        return mapped_batch(schema, [item for _, items in per_record for item in items], failures, n_in, json_output)
    except (ArithmeticError, TypeError, ValueError):  # pyarrow's ArrowInvalid and ArrowTypeError among them
        if json_output:
            raise
    outs: list[Any] = []
    for index, items in per_record:
        try:
            encoder.check(items)
        except (ArithmeticError, TypeError, ValueError):
            try:
                items = encoder.normalised(items)
                encoder.check(items)
            except (ArithmeticError, TypeError, ValueError) as exc:
                message = f"output does not fit the output schema: {type(exc).__name__}: {exc}"
                failures.append(_failure(places[index], Stage.SERIALIZE, message, raws[index], records[index]))
                continue
        outs.extend(items)
    return mapped_batch(schema, outs, failures, n_in, json_output)


def _failure(place: tuple[str, str, int], stage: Stage, message: str, raw: Any, record: Any) -> dict[str, Any]:
    source, unit, position = place
    return failure_row(Failure(source, unit, position, stage, message, raw if raw is not None else _raw(record)))


def failure_row(failure: Failure) -> dict[str, Any]:
    """A failure as a failure struct: the raw input as text, or base64 when it is not UTF-8."""
    raw = failure.raw
    text = encoded = None
    if raw is not None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            encoded = base64.b64encode(raw).decode("ascii")
    return {
        "source": failure.source,
        "unit": failure.unit,
        "position": failure.position,
        "stage": str(failure.stage),
        "error": failure.message,
        "raw": text,
        "raw_base64": encoded,
    }


def _raw(record: Any) -> bytes | None:
    try:
        return dumps(record)
    except (TypeError, orjson.JSONEncodeError):
        return None


def mapped_batch(schema: Any, outs: list[Any], failures: list[dict[str, Any]], n_in: int, json_output: bool) -> Any:
    """One Arrow batch of output, failure and count rows."""
    import pyarrow as pa

    n_out, n_failed = len(outs), len(failures)
    padded = [*outs, *([None] * (n_failed + 1))]
    if json_output:
        columns = [pa.array(padded, type=pa.string())]
    else:
        columns = pa.array(padded, type=pa.struct(list(schema)[:-2])).flatten()
    columns += [
        pa.array([*([None] * n_out), *failures, None], type=schema.field(FAILURE).type),
        pa.array([*([None] * (n_out + n_failed)), n_in], type=pa.int64()),
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def map_rows(shipped: Shipped, schema: Any, arrow_type: Any | None) -> Any:
    """The ``mapInArrow`` function of a DataFrame's rows: each row (as a dict) is one record."""

    def run(batches: Iterator[Any]) -> Iterator[Any]:
        from pyspark import TaskContext

        pre = _load_or_raise(shipped)
        encoder = Encoder(arrow_type)
        context = TaskContext.get()
        source = f"partition {context.partitionId() if context else 0}"
        seen = 0
        for batch in batches:
            records = batch.to_pylist()
            places = [(source, "row", seen + i + 1) for i in range(len(records))]
            seen += len(records)
            yield map_records(pre, encoder, schema, records, places, [None] * len(records), [], len(records))

    return run


def map_files(shipped: Shipped, schema: Any, arrow_type: Any | None, input_format: str, max_record_bytes: int) -> Any:
    """The ``mapInArrow`` function of ``binaryFile`` rows: each file is decoded by the batch codecs."""

    def run(batches: Iterator[Any]) -> Iterator[Any]:
        pre = _load_or_raise(shipped)
        encoder = Encoder(arrow_type)
        for batch in batches:
            for path, content in zip(
                batch.column("path").to_pylist(), batch.column("content").to_pylist(), strict=True
            ):
                name = path[len("file:") :] if path.startswith("file:") else path
                for chunk in _chunks(name, content, input_format, max_record_bytes):
                    yield _map_chunk(pre, encoder, schema, chunk)

    return run


def _chunks(name: str, content: bytes, input_format: str, max_record_bytes: int) -> Iterator[Chunk]:
    stream = io.BufferedReader(io.BytesIO(content))
    try:
        codec = detect_codec(stream, name, input_format, None, max_record_bytes)
        yield from codec.chunks(stream, name)
    except MlprepError as exc:
        failure = Failure(name, "record", 1, Stage.OPEN, str(exc))
        yield Chunk(name, "record", 1, records=[], fatal=failure)


def _map_chunk(pre: Preprocessor, encoder: Encoder, schema: Any, chunk: Chunk) -> Any:
    failures = [failure_row(f) for f in chunk.failures or []]
    if chunk.lines is not None:
        decode_failures: list[Failure] = []
        records, positions = decode_lines(chunk, decode_failures)
        failures.extend(failure_row(failure) for failure in decode_failures)
        places = [(chunk.source, chunk.unit, position) for position in positions]
        raws = [chunk.lines[position - chunk.first] for position in positions]
    else:
        records = chunk.records or []
        places = [(chunk.source, chunk.unit, chunk.first + i) for i in range(len(records))]
        raws = [None] * len(records)
    n_in = len(records) + len(failures)
    if chunk.fatal is not None:
        failures.append(failure_row(chunk.fatal))
        n_in += 1
    return map_records(pre, encoder, schema, records, places, raws, failures, n_in)
