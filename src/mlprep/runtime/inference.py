"""Preprocessing then the model, over a list of records, with every record accounted for.

The REST API's ``/predict`` and ``/invocations`` and the Kafka processor with a model all call
``predict_records``: a record that fails ``pre_processing`` never reaches the model, a record it
drops gets no prediction, one it turns into several gets one prediction each.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from mlprep.redaction import redact
from mlprep.runtime.core import Preprocessor, describe_exception, records_of
from mlprep.runtime.model import ModelError, ServedModel
from mlprep.runtime.outcomes import Stage


@dataclass
class Inference:
    """``predictions[i]`` are the predictions of input record ``i``, one per output of ``pre_processing``
    (an empty list where it dropped or failed the record); ``rows[i]`` the matching preprocessed
    records. ``failures`` maps the index of a failed record to its stage and reason. ``model_error``
    is set when the model failed the batch: then no record has a prediction."""

    predictions: list[list[Any]]
    rows: list[list[Any]]
    failures: dict[int, tuple[Stage, str]] = field(default_factory=dict)
    model_error: str | None = None
    version: str | None = None  # the model version that predicted
    model_seconds: float | None = None  # how long the model took (None when it was not called)


def predict_records(pre: Preprocessor, model: ServedModel, records: list[Any]) -> Inference:
    """``pre_processing`` on ``records``, then one call of the model on every output record."""
    outputs, raised = pre.apply(records)
    failures = {
        index: (Stage.PREPROCESS, f"pre_processing raised {redact(describe_exception(exc))}")
        for index, exc in raised.items()
    }
    rows_of: list[list[Any]] = []
    flat: list[Any] = []
    for index, value in enumerate(outputs):
        rows = [] if index in failures else records_of(value)
        if any(type(row) is not dict for row in rows):
            kinds = sorted({type(row).__name__ for row in rows if type(row) is not dict})
            failures[index] = (
                Stage.PREPROCESS,
                f"pre_processing returned {', '.join(kinds)}: the model needs records (dicts)",
            )
            rows = []
        rows_of.append(rows)
        flat.extend(rows)
    served = model.current  # one version for the whole batch, even if the alias moves meanwhile
    begin = time.perf_counter()
    try:
        predicted = served.predict(flat) if flat else []
    except ModelError as exc:
        seconds = time.perf_counter() - begin
        return Inference([[] for _ in records], rows_of, failures, str(exc), served.info.version, seconds)
    seconds = time.perf_counter() - begin if flat else None
    model.remember(flat)
    predictions: list[list[Any]] = []
    position = 0
    for rows in rows_of:
        predictions.append(predicted[position : position + len(rows)])
        position += len(rows)
    return Inference(predictions, rows_of, failures, None, served.info.version, seconds)
