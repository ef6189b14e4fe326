"""REST front end: ``/preprocess``, ``/preprocess/batch``, ``/health``, ``/ready``, ``/metrics``.

Bodies are parsed with orjson rather than pydantic (the models in ``schemas`` only document them),
and ``pre_processing`` runs in the thread pool so CPU-bound code never blocks the event loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from mlprep import __version__
from mlprep.api.metrics import Metrics
from mlprep.api.schemas import (
    BatchRequest,
    BatchResponse,
    ErrorResponse,
    PreprocessRequest,
    PreprocessResponse,
    body_schema,
)
from mlprep.core import Preprocessor, describe_exception
from mlprep.redaction import redact
from mlprep.serialization import dumps
from mlprep.settings import Settings

JSON = "application/json"
CLIENT_CLOSED = 499  # nginx's status for "the client closed the connection before the answer"
log = logging.getLogger("mlprep.api")
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "The body is not valid JSON",
        413: "The body is larger than MAX_BODY_BYTES",
        422: "The body has no usable 'data', or pre_processing raised for this record",
        500: "pre_processing returned something that cannot be serialised to JSON",
    }.items()
}


class ApiError(Exception):
    """An error answered as ``{"error": ..., "type": ...}`` with its HTTP status."""

    def __init__(self, status: int, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind

    def response(self) -> Response:
        return Response(dumps({"error": str(self), "type": self.kind}), status_code=self.status, media_type=JSON)


class _RedactCredentials(logging.Filter):
    """Masks URL credentials in a log record's arguments and traceback (user code's errors can hold URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def _install_log_redaction() -> None:
    for name in ("uvicorn.error", "uvicorn.access", log.name):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactCredentials) for f in logger.filters):
            logger.addFilter(_RedactCredentials())


def create_app(settings: Settings | None = None, preprocessor: Preprocessor | None = None) -> FastAPI:
    """The API around one loaded preprocessing (loaded here from ``PREPROCESSING_DIR`` if not given)."""
    settings = settings or Settings()
    pre = preprocessor or Preprocessor.load(settings.preprocessing_dir, skip_cutouts=settings.skip_cutouts)
    metrics = Metrics()
    started = time.time()
    limit = settings.max_body_bytes
    _install_log_redaction()
    app = FastAPI(
        title="mlprep preprocessing API",
        version=__version__,
        description="Applies the pre_processing function logged with an MLflow run to records.",
    )
    app.state.preprocessor = pre
    app.state.metrics = metrics
    # Other components running in the process (the Kafka processor) add {name: () -> dict} here;
    # a dict with "ready": False makes /ready answer 503.
    app.state.health_checks = {}

    async def handle(endpoint: str, request: Request, work: Callable[[Any], tuple[bytes, int, int]]) -> Response:
        begin = time.perf_counter()
        records = errors = 0
        try:
            data = await _read_data(request, limit)
            body, records, errors = await run_in_threadpool(work, data)
        except ApiError as exc:
            metrics.observe(endpoint, exc.status, time.perf_counter() - begin, records, 1)
            return exc.response()
        except ClientDisconnect:
            # Nobody is left to answer: one line, not the traceback of every dropped connection.
            log.debug("%s: the client disconnected before sending the whole body", endpoint)
            metrics.observe(endpoint, CLIENT_CLOSED, time.perf_counter() - begin)
            return Response(status_code=CLIENT_CLOSED)
        metrics.observe(endpoint, 200, time.perf_counter() - begin, records, errors)
        return Response(body, media_type=JSON)

    @app.post(
        "/preprocess",
        summary="Preprocess one record",
        openapi_extra=body_schema(PreprocessRequest),
        responses={200: {"model": PreprocessResponse}, **_ERRORS},
    )
    async def preprocess(request: Request) -> Response:
        return await handle("/preprocess", request, lambda data: _single(pre, data))

    @app.post(
        "/preprocess/batch",
        summary="Preprocess records in order; failures are listed by index, the rest go through",
        openapi_extra=body_schema(BatchRequest),
        responses={200: {"model": BatchResponse}, **_ERRORS},
    )
    async def preprocess_batch(request: Request) -> Response:
        return await handle("/preprocess/batch", request, lambda data: _batch(pre, data))

    @app.get("/health", summary="Liveness, and which preprocessing is loaded")
    async def health() -> Response:
        body: dict[str, Any] = {
            "status": "ok",
            "mlprep_version": __version__,
            "uptime_seconds": round(time.time() - started, 3),
            "preprocessing": {
                "path": str(pre.path),
                "batch_function": pre.loaded.batch_function is not None,
                "requirements": str(pre.loaded.requirements) if pre.loaded.requirements else None,
                "skip_cutouts": pre.skip_cutouts,
            },
            **_provenance(settings, pre),
        }
        for name, check in app.state.health_checks.items():
            body[name] = check()
        return Response(dumps(body), media_type=JSON)

    @app.get("/ready", summary="Readiness: preprocessing loaded and every component ready")
    async def ready() -> Response:
        states = {name: check() for name, check in app.state.health_checks.items()}
        not_ready = [name for name, state in states.items() if not state.get("ready", True)]
        status = 503 if not_ready else 200
        return Response(dumps({"ready": not not_ready, "waiting_for": not_ready}), status_code=status, media_type=JSON)

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


def _provenance(settings: Settings, pre: Preprocessor) -> dict[str, str | None]:
    known = pre.loaded.metadata
    return {
        "run_id": settings.mlflow_run_id or known.get("run_id"),
        "model_name": settings.model_name or known.get("model_name"),
        "model_version": settings.model_version or known.get("version"),
        "type": settings.preprocessing_type or known.get("type"),
    }


async def _read_data(request: Request, limit: int) -> Any:
    """The ``data`` field of the JSON body, refusing bodies over ``limit`` bytes before reading them."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ApiError(413, f"request body is {length} bytes; the limit is {limit} (MAX_BODY_BYTES)", "too_large")
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise ApiError(413, f"request body is over the limit of {limit} bytes (MAX_BODY_BYTES)", "too_large")
        parts.append(part)
    try:
        body = orjson.loads(b"".join(parts))
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}", "invalid_json")
    if type(body) is not dict or "data" not in body:
        raise ApiError(422, 'the body must be a JSON object with a "data" field, e.g. {"data": {...}}', "no_data")
    return body["data"]


def _single(pre: Preprocessor, data: Any) -> tuple[bytes, int, int]:
    if type(data) is not dict:
        raise ApiError(
            422,
            f'"data" must be a JSON object (one record), not {_json_type(data)}; send lists to /preprocess/batch',
            "invalid_data",
        )
    outputs, failures = pre.apply([data])
    if failures:
        exc = failures[0]
        raise ApiError(422, f"pre_processing raised {_describe(exc)}", type(exc).__name__)
    try:
        return b'{"result":' + dumps(outputs[0]) + b"}", 1, 0
    except (TypeError, orjson.JSONEncodeError) as exc:
        raise ApiError(500, f"pre_processing returned a value that cannot be serialised to JSON: {exc}", "serialize")


def _batch(pre: Preprocessor, data: Any) -> tuple[bytes, int, int]:
    if type(data) is not list:
        raise ApiError(422, f'"data" must be a JSON array of records, not {_json_type(data)}', "invalid_data")
    errors: list[dict[str, Any]] = []
    if all(type(item) is dict for item in data):
        records, indexes = data, None
    else:
        indexes = [i for i, item in enumerate(data) if type(item) is dict]
        records = [data[i] for i in indexes]
        errors = [
            {"index": i, "stage": "input", "error": f"record must be a JSON object, not {_json_type(item)}"}
            for i, item in enumerate(data)
            if type(item) is not dict
        ]
    outputs, failures = pre.apply(records)
    parts = [b"null"] * len(data)
    for position, value in enumerate(outputs):
        index = indexes[position] if indexes is not None else position
        if failures and position in failures:
            message = f"pre_processing raised {_describe(failures[position])}"
            errors.append({"index": index, "stage": "preprocess", "error": message})
            continue
        try:
            parts[index] = dumps(value)
        except (TypeError, orjson.JSONEncodeError) as exc:
            errors.append({"index": index, "stage": "serialize", "error": f"output cannot be serialised: {exc}"})
    if errors:
        errors.sort(key=lambda e: e["index"])
    body = b'{"results":[' + b",".join(parts) + b'],"errors":' + dumps(errors) + b"}"
    return body, len(data), len(errors)


def _describe(exc: BaseException) -> str:
    """The exception and its place in user code, without the credentials of URLs in its message."""
    return redact(describe_exception(exc))


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
