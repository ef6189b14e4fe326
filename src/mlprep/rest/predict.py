"""The model's endpoints, served beside the preprocessing ones when ``mlprep serve --model`` is given.

``/predict`` answers in mlprep's shape (one entry per input record, per-record errors as in
``/preprocess/batch``, the model's name and version). ``/invocations`` and ``/ping`` follow MLflow's
scoring server contract (``dataframe_records``, ``dataframe_split``, ``instances``, ``inputs``;
``{"predictions": [...]}``; errors as ``{"error_code", "message"}``), except that the records are the
raw ones: they go through ``pre_processing`` first. Both go through the app's ``handle`` (limits,
placement, deadline, metrics), with a placement of their own: the model's cost is not the
preprocessing's, and must not decide where ``/preprocess`` runs.
"""

from __future__ import annotations

import contextlib
import functools
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from fastapi import FastAPI
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mlprep.rest import app as rest
from mlprep.rest.app import JSON, Answer, ApiError, Handle, ItemError
from mlprep.rest.metrics import Metrics
from mlprep.rest.placement import MODEL_CALL_S, Placement
from mlprep.rest.pool import Job, tracked
from mlprep.rest.schemas import ErrorResponse, body_schema
from mlprep.runtime.core import Preprocessor
from mlprep.runtime.inference import Inference, predict_records
from mlprep.runtime.model import ServedModel
from mlprep.runtime.outcomes import Stage
from mlprep.runtime.serialization import dumps
from mlprep.settings import Settings, load_settings

# MLflow's input fields, and the error codes its scoring server answers with.
FORMATS = ("dataframe_records", "dataframe_split", "instances", "inputs")
BAD_REQUEST = "BAD_REQUEST"
INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"
_CODES = {504: "DEADLINE_EXCEEDED", 500: "INTERNAL_ERROR", 413: "RESOURCE_EXHAUSTED", 415: BAD_REQUEST}
LISTED_FAILURES = 20  # failed records named in one /invocations error message
Timed = Callable[[float], None]  # takes the seconds one call of the model took


class ModelFailure(ApiError):
    """The model failed a ``/predict`` batch: 422 naming the model, with the records' own errors kept."""

    def __init__(self, message: str, model: dict[str, Any], errors: list[dict[str, Any]], **kwargs: Any) -> None:
        super().__init__(422, message, Stage.MODEL, stage=Stage.MODEL, **kwargs)
        self.model = model
        self.errors = errors

    def response(self) -> Response:
        body = {"error": str(self), "type": self.kind, "stage": Stage.MODEL, "model": self.model, "errors": self.errors}
        return Response(dumps(body), status_code=self.status, media_type=JSON)


class ScoringError(ApiError):
    """An ``/invocations`` error, answered as MLflow's scoring server does: ``{"error_code", "message"}``."""

    def __init__(self, message: str, code: str = BAD_REQUEST, status: int = 400, **kwargs: Any) -> None:
        super().__init__(status, message, code, **kwargs)


def mlflow_error(exc: ApiError) -> Response:
    """Any error of ``/invocations`` (its own, or the app's: 413, 504) in MLflow's shape."""
    code = exc.kind if isinstance(exc, ScoringError) else _CODES.get(exc.status, BAD_REQUEST)
    return Response(dumps({"error_code": code, "message": str(exc)}), status_code=exc.status, media_type=JSON)


class ModelEndpoints:
    """``/predict``, ``/invocations`` and ``/ping`` around one preprocessing and one ``ServedModel``."""

    def __init__(self, settings: Settings, pre: Preprocessor, served: ServedModel) -> None:
        self.settings, self.pre, self.served = settings, pre, served
        self.placement = Placement(settings.api_inline, MODEL_CALL_S)

    def routes(self, handle: Handle, metrics: Metrics) -> list[Route]:
        pre, served, placement, max_batch = self.pre, self.served, self.placement, self.settings.max_batch_records

        predict_timed = functools.partial(metrics.observe_model, "/predict")
        invocations_timed = functools.partial(metrics.observe_model, "/invocations")

        def predict_work(data: Any, job: Job) -> Answer:
            return _predict(pre, served, data, job, predict_timed)

        def invocations_work(records: Any, job: Job) -> Answer:
            return _invocations(pre, served, records, job, invocations_timed)

        async def predict(request: Request) -> Response:
            return await handle("/predict", request, predict_work, max_batch, placement=placement)

        async def invocations(request: Request) -> Response:
            mime = request.headers.get("content-type", JSON).partition(";")[0].strip().lower()
            if mime in {"text/csv", "application/x-parquet", "application/parquet"}:
                error = ScoringError(
                    f"this server reads JSON bodies only (Content-Type: {JSON}), got {mime}: send the records "
                    f"as one of the fields {', '.join(FORMATS)}",
                    status=415,
                )
                metrics.observe("/invocations", 415, 0.0, 0, {Stage.DECODE: 1})
                return mlflow_error(error)
            return await handle(
                "/invocations", request, invocations_work, max_batch, _scoring_records, mlflow_error, placement
            )

        async def ping(request: Request) -> Response:
            return Response(b"\n", media_type=JSON)

        return [
            Route("/predict", predict, methods=["POST"]),
            Route("/invocations", invocations, methods=["POST"]),
            Route("/ping", ping),
        ]

    def describe(self, api: FastAPI) -> None:
        async def undocumented() -> None:  # never served: the Starlette routes answer
            raise NotImplementedError

        api.post(
            "/predict",
            summary="Preprocess records, then predict with the served model; failures are listed by index",
            openapi_extra=body_schema(PredictRequest),
            responses={
                200: {"model": PredictResponse},
                422: {"model": ModelFailureResponse, "description": "No usable 'data', or the model failed"},
                **{code: spec for code, spec in rest._ERRORS.items() if code != 422},
            },
        )(undocumented)
        api.post(
            "/invocations",
            summary="MLflow's scoring contract on raw records: pre_processing, then the model",
            openapi_extra=body_schema(InvocationsRequest),
            responses={
                200: {"model": InvocationsResponse},
                400: {"model": MlflowError, "description": "Bad body, a record failed pre_processing, or the model"},
                413: {"model": MlflowError, "description": "Over MAX_BODY_BYTES or MAX_BATCH_RECORDS"},
                504: {"model": MlflowError, "description": "Not finished within REQUEST_TIMEOUT_S"},
            },
        )(undocumented)
        api.get("/ping", summary="200 while the server runs (as MLflow's scoring server answers)")(undocumented)

    def state(self) -> dict[str, Any]:
        """The model's part of ``/health``: which version serves, and where its requests run."""
        return {**self.served.state(), "runs": self.placement.state()}

    def start(self) -> None:
        self.served.start()

    def stop(self) -> None:
        self.served.stop()


def create_app(
    settings: Settings | None = None,
    preprocessor: Preprocessor | None = None,
    components: Mapping[str, Callable[[], dict[str, Any]]] | None = None,
    model: ServedModel | None = None,
) -> Starlette:
    """The REST API with the model's endpoints (the model loaded here from ``MODEL_URI`` if not given)."""
    settings = settings or load_settings()
    pre = preprocessor or Preprocessor.load(settings.preprocessing_dir, skip_cutouts=settings.skip_cutouts)
    if model is None:
        if not settings.model_uri:
            raise ValueError("MODEL_URI is not set: no model to serve")
        model = ServedModel(settings.model_uri, settings.model_reload_s)
    endpoints = ModelEndpoints(settings, pre, model)
    return rest.create_app(settings, pre, {**(components or {}), "model": endpoints.state}, endpoints)


def _predict(pre: Preprocessor, served: ServedModel, data: Any, job: Job, timed: Timed) -> Answer:
    """``{"predictions", "errors", "model"}``: one prediction (or a list, or null) per input record."""
    if type(data) is dict:
        records = [data]
    elif type(data) is list:
        records = data
    else:
        kind = rest._json_type(data)
        raise ApiError(
            422, f'"data" must be a JSON object (one record) or an array of records, not {kind}', "invalid_data"
        )
    errors, positions, good = rest.split_objects(records)
    inference = _infer(pre, served, good, positions, job, errors, timed)
    model = {"name": served.current.info.name, "version": inference.version}
    if inference.model_error is not None:
        errors.sort()
        counts = Counter(stage for _, stage, _ in errors)
        counts[Stage.MODEL] += sum(1 for rows in inference.rows if rows)
        raise ModelFailure(
            f"model {served.current.info.name or served.uri} version {inference.version}: {inference.model_error}",
            model,
            _error_list(errors),
            records=len(records),
            counts=counts,
        )
    results: list[Any] = [None] * len(records) if errors else []
    for position, predicted in zip(positions, inference.predictions, strict=True):
        value = (predicted[0] if len(predicted) == 1 else predicted) if predicted else None
        if errors:
            results[position] = value
        else:
            results.append(value)
    encoded = rest._encode(results, 0, errors)
    tail = b',"model":' + orjson.dumps(model) + b"}"
    if not errors:
        return b'{"predictions":' + encoded + b',"errors":[]' + tail, len(records), None
    errors.sort()
    body = b'{"predictions":' + encoded + b',"errors":' + dumps(_error_list(errors)) + tail
    return body, len(records), Counter(stage for _, stage, _ in errors)


def _invocations(pre: Preprocessor, served: ServedModel, records: list[Any], job: Job, timed: Timed) -> Answer:
    """``{"predictions": [...]}``: one prediction per preprocessed record, in order, as MLflow writes them."""
    errors, positions, good = rest.split_objects(records)
    if errors:  # nothing reaches the model when a record is not one
        _refuse(errors, len(records))
    inference = _infer(pre, served, good, positions, job, errors, timed)
    if errors:
        _refuse(errors, len(records))
    if inference.model_error is not None:
        name = served.current.info.name or served.uri
        raise ScoringError(
            f"model {name} version {inference.version}: {inference.model_error}",
            records=len(records),
            counts={Stage.MODEL: sum(1 for rows in inference.rows if rows)},
        )
    flat = [prediction for predicted in inference.predictions for prediction in predicted]
    try:
        return b'{"predictions":' + rest._json(flat) + b"}", len(records), None
    except (TypeError, orjson.JSONEncodeError) as exc:
        message = f"the model's predictions cannot be serialised to JSON: {exc}"
        raise ScoringError(message, "INTERNAL_ERROR", 500, stage=Stage.SERIALIZE, records=len(records)) from exc


def _infer(
    pre: Preprocessor,
    served: ServedModel,
    records: list[Any],
    positions: range | list[int],
    job: Job,
    errors: list[ItemError],
    timed: Timed,
) -> Inference:
    """``predict_records`` on the objects; their failures go to ``errors`` by position in the request."""
    job.total = len(positions)
    inference = predict_records(pre, served, tracked(records, positions, job))
    if inference.model_seconds is not None:
        timed(inference.model_seconds)
    errors.extend((positions[index], stage, message) for index, (stage, message) in inference.failures.items())
    return inference


def _error_list(errors: list[ItemError]) -> list[dict[str, Any]]:
    return [{"index": index, "stage": stage, "error": message} for index, stage, message in errors]


def _refuse(errors: list[ItemError], total: int) -> None:
    """A 400 naming the records that failed before the model (nothing was predicted)."""
    errors.sort()
    listed = "; ".join(f"record {index}: {stage} failed: {why}" for index, stage, why in errors[:LISTED_FAILURES])
    more = f"; and {len(errors) - LISTED_FAILURES} more" if len(errors) > LISTED_FAILURES else ""
    raise ScoringError(
        f"{len(errors)} of {total} records failed before the model, so none was predicted "
        f"(POST /predict answers the others and lists the failures by index): {listed}{more}",
        records=total,
        counts=Counter(stage for _, stage, _ in errors),
    )


def _scoring_records(raw: bytes | bytearray, max_records: int | None = None, lock: bool = True) -> list[Any]:
    """The records of an MLflow scoring body, as a list of dicts (or of what the client sent)."""
    with rest._PARSING if lock else contextlib.nullcontext():
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ScoringError(
                f"Ensure that input is a valid JSON formatted string. Error: {exc}", INVALID_PARAMETER_VALUE
            ) from exc
        if type(body) is not dict:
            raise ScoringError(
                f"The input must be a JSON dictionary with exactly one of the input fields {set(FORMATS)}. "
                f"Received {rest._json_type(body)}.",
                INVALID_PARAMETER_VALUE,
            )
        given = [name for name in FORMATS if name in body]
        if len(given) != 1:
            raise ScoringError(
                f"The input must be a JSON dictionary with exactly one of the input fields {set(FORMATS)}. "
                f"Received dictionary with input fields: {list(body)}."
            )
        field = given[0]
        value = body.pop(field)
        del body
        records = _records_of(field, value)
        if max_records is not None and len(records) > max_records:
            raise ScoringError(
                f"the request has {len(records)} records; the limit is {max_records} (MAX_BATCH_RECORDS): "
                "send them in several requests",
                "RESOURCE_EXHAUSTED",
                413,
            )
    return records


def _records_of(field: str, value: Any) -> list[Any]:
    """One format's value as records: a list of records, ``split``'s rows, or a dict of columns."""
    if field == "dataframe_split":
        return _split_records(value)
    if type(value) is list:
        return value
    if field != "dataframe_records" and type(value) is dict:
        return _column_records(field, value)
    kind = "a list of records" if field == "dataframe_records" else "a list of records or a dict of columns"
    raise ScoringError(f"{field} must be {kind}, not {rest._json_type(value)}", INVALID_PARAMETER_VALUE)


def _split_records(value: Any) -> list[dict[str, Any]]:
    """``{"columns": [...], "data": [[...], ...], "index": [...]}`` as records (the index is not a field)."""
    if type(value) is not dict or "data" not in value or set(value) - {"columns", "data", "index"}:
        got = sorted(value) if type(value) is dict else rest._json_type(value)
        raise ScoringError(
            f"dataframe_split must have a 'data' field and optionally 'columns' and 'index' fields. Got {got}.",
            INVALID_PARAMETER_VALUE,
        )
    rows = value["data"]
    columns = value.get("columns")
    if type(rows) is not list or any(type(row) is not list for row in rows):
        raise ScoringError("dataframe_split's 'data' must be a list of rows (lists)", INVALID_PARAMETER_VALUE)
    if columns is None:
        columns = list(range(len(rows[0]))) if rows else []
    if type(columns) is not list or any(type(column) not in (str, int) for column in columns):
        raise ScoringError("dataframe_split's 'columns' must be a list of names", INVALID_PARAMETER_VALUE)
    names = [str(column) for column in columns]
    for number, row in enumerate(rows):
        if len(row) != len(names):
            raise ScoringError(
                f"dataframe_split: row {number} has {len(row)} values for {len(names)} columns", INVALID_PARAMETER_VALUE
            )
    return [dict(zip(names, row, strict=True)) for row in rows]


def _column_records(field: str, value: dict[str, Any]) -> list[dict[str, Any]]:
    """``{"column": [v0, v1, ...], ...}`` as records (every column as long as the others)."""
    lengths = {len(column) for column in value.values() if type(column) is list}
    if len(lengths) != 1 or any(type(column) is not list for column in value.values()):
        raise ScoringError(
            f"{field} as a dict must map each column to a list of values, all of the same length "
            "(or send a list of records)",
            INVALID_PARAMETER_VALUE,
        )
    names = list(value)
    return [dict(zip(names, row, strict=True)) for row in zip(*value.values(), strict=True)]


class PredictRequest(BaseModel):
    data: dict[str, Any] | list[dict[str, Any]] = Field(
        ..., description="One raw record, or records in order; each goes through pre_processing, then the model"
    )


class ItemErrorModel(BaseModel):
    index: int = Field(..., description="Position of the record in the request's data list")
    stage: str = Field(..., description="decode (not a JSON object), preprocess or serialize")
    error: str


class ModelInfoModel(BaseModel):
    name: str | None = Field(None, description="The registered model's name")
    version: str | None = Field(None, description="The version that predicted this batch")


class PredictResponse(BaseModel):
    predictions: list[Any] = Field(
        ...,
        description="One entry per input record, in order: its prediction when pre_processing gave one record, a "
        "list when it gave several, null when it dropped or failed the record",
    )
    errors: list[ItemErrorModel] = Field(..., description="The records that failed, by index; empty when all passed")
    model: ModelInfoModel


class ModelFailureResponse(ErrorResponse):
    stage: str | None = Field(None, description="model when the model failed the batch")
    model: ModelInfoModel | None = None
    errors: list[ItemErrorModel] | None = Field(None, description="The records that failed before the model")


class InvocationsRequest(BaseModel):
    dataframe_records: list[dict[str, Any]] | None = Field(None, description="Raw records")
    dataframe_split: dict[str, Any] | None = Field(None, description='{"columns": [...], "data": [[...]], "index"?}')
    instances: list[dict[str, Any]] | dict[str, list[Any]] | None = Field(None, description="Records, or columns")
    inputs: list[dict[str, Any]] | dict[str, list[Any]] | None = Field(None, description="Records, or columns")


class InvocationsResponse(BaseModel):
    predictions: list[Any] = Field(..., description="One prediction per preprocessed record, in order")


class MlflowError(BaseModel):
    error_code: str = Field(..., description="BAD_REQUEST, INVALID_PARAMETER_VALUE, ...")
    message: str
