"""REST front end: ``/preprocess``, ``/preprocess/batch``, ``/health``, ``/ready``, ``/metrics``.

A plain Starlette app: bodies are parsed with orjson and answers written as bytes, with no per-request
validation layer (the pydantic models in ``schemas`` only describe the bodies in ``/docs``, which a
FastAPI app built for the purpose documents). ``pre_processing`` runs on the event loop once it has
shown it is fast, or else in a bounded thread pool (``API_THREADS``) with a deadline per request
(``REQUEST_TIMEOUT_S``): see ``placement``.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

import orjson
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from mlprep import __version__
from mlprep.redaction import redact, redact_logs
from mlprep.rest.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from mlprep.rest.metrics import Metrics
from mlprep.rest.placement import INLINE_BODY_BYTES, Placement
from mlprep.rest.pool import Abandoned, Job, RequestTimeout, WorkerPool, tracked
from mlprep.rest.schemas import (
    BatchRequest,
    BatchResponse,
    ErrorResponse,
    PreprocessRequest,
    PreprocessResponse,
    body_schema,
)
from mlprep.runtime.core import Preprocessor, describe_exception
from mlprep.runtime.outcomes import Stage
from mlprep.runtime.provenance import Provenance
from mlprep.runtime.serialization import dumps
from mlprep.settings import Settings, load_settings

JSON = "application/json"
# Records given to pre_processing (or pre_processing_batch) at a time in /preprocess/batch: the
# exceptions of a chunk and its encoded outputs are all a request holds besides its body and answer.
CHUNK_RECORDS = 1000
CLIENT_CLOSED = 499  # nginx's status for "the client closed the connection before the answer"
TITLE = "mlprep preprocessing API"
_UNPARSED = object()
log = logging.getLogger("mlprep.rest")
_PARSING = threading.Lock()
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "The body is not valid JSON",
        413: "The body is larger than MAX_BODY_BYTES, or the batch has more than MAX_BATCH_RECORDS records",
        422: "The body has no usable 'data', or pre_processing raised for this record",
        500: "pre_processing returned something that cannot be serialised to JSON",
        504: "pre_processing did not finish within REQUEST_TIMEOUT_S; 'index' is the record it was on",
    }.items()
}


class ApiError(Exception):
    """An error answered as ``{"error": ..., "type": ...}`` with its HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str | None = None,
        index: int | None = None,
        stage: Stage = Stage.DECODE,
        records: int = 0,
        counts: Mapping[Stage, int] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.index = index
        self.stage = stage  # what the metrics count the failed request's records under
        self.records = records  # the request's records, when they were read
        self.counts = counts  # failed records by stage, when known record by record

    def response(self) -> Response:
        body: dict[str, Any] = {"error": str(self), "type": self.kind}
        if self.index is not None:
            body["index"] = self.index
        return Response(dumps(body), status_code=self.status, media_type=JSON)


def _respond(error: ApiError) -> Response:
    return error.response()  # the error's own answer (a subclass may write more)


class Parse(Protocol):
    """Reads a request's body into what its ``Work`` takes (``_data_of`` for the preprocessing endpoints)."""

    def __call__(self, raw: bytes | bytearray, max_records: int | None = None, lock: bool = True) -> Any: ...


class Handle(Protocol):
    """Answers one request with the front end's limits, placement, deadline and metrics (``create_app``'s
    ``handle``): ``parse`` reads the body, ``work`` answers it, ``fail`` writes an ``ApiError``, and
    ``placement`` decides where ``work`` runs (the preprocessing's own when None)."""

    async def __call__(
        self,
        endpoint: str,
        request: Request,
        work: Work,
        max_records: int | None = None,
        parse: Parse = ...,
        fail: Callable[[ApiError], Response] = ...,
        placement: Placement | None = None,
    ) -> Response: ...


class Extension(Protocol):
    """More endpoints served beside the preprocessing ones, through the same ``Handle``."""

    def routes(self, handle: Handle, metrics: Metrics) -> list[Route]: ...

    def describe(self, api: FastAPI) -> None:
        """Adds the endpoints to the OpenAPI document."""

    def start(self) -> None:
        """Called when the server starts serving (in its lifespan)."""

    def stop(self) -> None:
        """Called when the server shuts down."""


def create_app(
    settings: Settings | None = None,
    preprocessor: Preprocessor | None = None,
    components: Mapping[str, Callable[[], dict[str, Any]]] | None = None,
    extension: Extension | None = None,
) -> Starlette:
    """The API around one loaded preprocessing (loaded here from ``PREPROCESSING_DIR`` if not given).

    ``components`` are other parts of the process (the Kafka processor) whose state ``/health`` and
    ``/ready`` show: a state with ``"ready": False`` makes ``/ready`` answer 503, one with
    ``"state": "failed"`` makes both answer 503 with its ``error`` (the process is about to exit).
    ``extension`` adds endpoints (the model's ``/predict`` and ``/invocations``).
    """
    settings = settings or load_settings()
    pre = preprocessor or Preprocessor.load(settings.preprocessing_dir, skip_cutouts=settings.skip_cutouts)
    metrics = Metrics()
    started = time.time()
    limit = settings.max_body_bytes
    max_batch = settings.max_batch_records
    pool = WorkerPool(settings.api_threads, settings.request_timeout_s)
    preprocessing_placement = Placement(settings.api_inline)
    redact_logs()
    checks = dict(components or {})

    def in_pool(
        work: Work, raw: bytes | bytearray, parsed: Any, max_records: int | None, parse: Parse, placement: Placement
    ) -> Callable[[Job], Answer]:
        """``work`` for a pool thread, timed in CPU seconds for the placement (wall time waits for the GIL)."""

        def run(job: Job) -> Answer:
            profiled = placement.watch(profile=True)
            begin = time.thread_time()
            try:
                return work(parse(raw, max_records) if parsed is _UNPARSED else parsed, job)
            finally:
                placement.unwatch(profiled)
                placement.observe(job.total, time.thread_time() - begin, inline=False)

        return run

    async def handle(
        endpoint: str,
        request: Request,
        work: Work,
        max_records: int | None = None,
        parse: Parse = _data_of,
        fail: Callable[[ApiError], Response] = _respond,
        placement: Placement | None = None,
    ) -> Response:
        placement = placement or preprocessing_placement
        begin = time.perf_counter()
        records = 0
        job = Job()
        try:
            raw = await _read_body(request, limit)
            parsed: Any = _UNPARSED
            if placement.inline and len(raw) <= INLINE_BODY_BYTES:
                parsed = parse(raw, max_records, lock=False)
                count = len(parsed) if type(parsed) is list else 1
                if placement.runs_inline(count, len(raw)):
                    job.tracked = False
                    placement.watch()
                    try:
                        body, records, errors = work(parsed, job)
                    finally:
                        placement.unwatch()
                        placement.observe(job.total, time.perf_counter() - begin, inline=True)
                    metrics.observe(endpoint, 200, time.perf_counter() - begin, records, errors)
                    return Response(body, media_type=JSON)
            body, records, errors = await pool.run(in_pool(work, raw, parsed, max_records, parse, placement), job)
        except ApiError as exc:
            counts = exc.counts or {exc.stage: 1}
            metrics.observe(endpoint, exc.status, time.perf_counter() - begin, exc.records or records, counts)
            return fail(exc)
        except RequestTimeout:
            metrics.observe(endpoint, 504, time.perf_counter() - begin, job.total, {Stage.TIMEOUT: 1})
            error = _timeout_error(job, settings, pre)
            log.warning("%s: %s", endpoint, error)
            return fail(error)
        except ClientDisconnect:
            # Nobody is left to answer: one line, not the traceback of every dropped connection.
            log.debug("%s: the client disconnected before sending the whole body", endpoint)
            metrics.observe(endpoint, CLIENT_CLOSED, time.perf_counter() - begin)
            return Response(status_code=CLIENT_CLOSED)
        metrics.observe(endpoint, 200, time.perf_counter() - begin, records, errors)
        return Response(body, media_type=JSON)

    async def preprocess(request: Request) -> Response:
        return await handle("/preprocess", request, lambda data, job: _single(pre, data, job))

    async def preprocess_batch(request: Request) -> Response:
        return await handle("/preprocess/batch", request, lambda data, job: _batch(pre, data, job), max_batch)

    async def health(request: Request) -> Response:
        workers = pool.state()
        body: dict[str, Any] = {
            "status": "stuck" if workers["stuck"] else "ok",
            "mlprep_version": __version__,
            "uptime_seconds": round(time.time() - started, 3),
            "preprocessing": {
                "path": str(pre.path),
                "batch_function": pre.loaded.batch_function is not None,
                "batch_fallbacks": pre.batch_fallbacks,
                "requirements": str(pre.loaded.requirements) if pre.loaded.requirements else None,
                "skip_cutouts": pre.skip_cutouts,
                "runs": preprocessing_placement.state(),
            },
            **Provenance.resolve(settings, pre.loaded.metadata).as_dict(),
            "workers": workers,
        }
        for name, check in checks.items():
            body[name] = check()
        failed = _failed(body, checks)
        if failed is not None:
            return Response(dumps(failed), status_code=503, media_type=JSON)
        return Response(dumps(body), media_type=JSON)

    async def ready(request: Request) -> Response:
        states = {name: check() for name, check in checks.items()}
        failed = _failed(states, checks)
        if failed is not None:
            return Response(dumps(failed), status_code=503, media_type=JSON)
        not_ready = [name for name, state in states.items() if not state.get("ready", True)]
        body: dict[str, Any] = {"ready": True, "waiting_for": not_ready}
        workers = pool.state()
        if workers["saturated"]:
            # Every thread busy with requests queued, or one stuck past REQUEST_TIMEOUT_S.
            not_ready.append("workers")
            body["workers"] = workers
        body["ready"] = not not_ready
        return Response(dumps(body), status_code=503 if not_ready else 200, media_type=JSON)

    async def prometheus(request: Request) -> Response:
        return Response(metrics.render(), media_type=METRICS_CONTENT_TYPE)

    spec = orjson.dumps(_describe_api(extension))

    async def openapi(request: Request) -> Response:
        return Response(spec, media_type=JSON)

    async def docs(request: Request) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{TITLE} - docs")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # What is loaded by now (libraries, the preprocessing) lives as long as the process: out of the
        # collector's sight, so its full collections stop walking it (they were the p99's pauses).
        gc.collect()
        gc.freeze()
        if extension is None:
            yield
            return
        extension.start()
        try:
            yield
        finally:
            extension.stop()

    app = Starlette(
        routes=[
            Route("/preprocess", preprocess, methods=["POST"]),
            Route("/preprocess/batch", preprocess_batch, methods=["POST"]),
            Route("/health", health),
            Route("/ready", ready),
            Route("/metrics", prometheus),
            Route("/openapi.json", openapi),
            Route("/docs", docs),
            *(extension.routes(handle, metrics) if extension else ()),
        ],
        lifespan=lifespan,
    )
    app.state.preprocessor = pre
    app.state.metrics = metrics
    app.state.pool = pool
    app.state.placement = preprocessing_placement
    return app


Answer = tuple[bytes, int, "Counter[Stage] | None"]  # body, records, failed records by stage
Work = Callable[[Any, Job], Answer]


def _describe_api(extension: Extension | None = None) -> dict[str, Any]:
    """The OpenAPI document of the routes above, written by a FastAPI app that only describes them."""
    described = FastAPI(
        title=TITLE,
        version=__version__,
        description="Applies the pre_processing function logged with an MLflow run to records.",
    )

    async def undocumented() -> None:  # never served: the Starlette routes answer
        raise NotImplementedError

    described.post(
        "/preprocess",
        summary="Preprocess one record",
        openapi_extra=body_schema(PreprocessRequest),
        responses={200: {"model": PreprocessResponse}, **_ERRORS},
    )(undocumented)
    described.post(
        "/preprocess/batch",
        summary="Preprocess records in order; failures are listed by index, the rest go through",
        openapi_extra=body_schema(BatchRequest),
        responses={200: {"model": BatchResponse}, **_ERRORS},
    )(undocumented)
    described.get("/health", summary="Liveness, which preprocessing is loaded, where it runs, and its threads")(
        undocumented
    )
    described.get("/ready", summary="Readiness: every component ready and a thread free for pre_processing soon")(
        undocumented
    )
    described.get("/metrics", summary="Prometheus metrics")(undocumented)
    if extension is not None:
        extension.describe(described)
    return described.openapi()


async def _read_body(request: Request, limit: int) -> bytes | bytearray:
    """The raw body, refusing bodies over ``limit`` bytes before reading them.

    Read from the ASGI messages themselves: Starlette's ``Request.stream`` is an async generator,
    whose creation and bookkeeping cost more than the rest of a small request's reading.
    """
    for name, value in request.scope["headers"]:
        if name == b"content-length":
            if value.isdigit() and int(value) > limit:
                length = value.decode()
                message = f"request body is {length} bytes; the limit is {limit} (MAX_BODY_BYTES)"
                raise ApiError(413, message, "too_large")
            break
    raw = bytearray()
    receive = request.receive
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        part = message.get("body", b"")
        if len(raw) + len(part) > limit:
            raise ApiError(413, f"request body is over the limit of {limit} bytes (MAX_BODY_BYTES)", "too_large")
        more = message.get("more_body", False)
        if not more and not raw:
            return part  # the whole body in one message, as small bodies come: no copy
        raw += part
        if not more:
            return raw


def _data_of(raw: bytes | bytearray, max_records: int | None = None, lock: bool = True) -> Any:
    """The ``data`` field of a JSON body, refusing a list of more than ``max_records``.

    Parsed in a pool thread, so only running requests hold the objects, and one body at a time: orjson
    holds the GIL while parsing anyway, and a batch refused for its size is freed before the next parse.
    Small bodies of a function that runs inline are parsed on the event loop, without the lock (a pool
    thread may hold it for a large body).
    """
    with _PARSING if lock else contextlib.nullcontext():
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"request body is not valid JSON: {exc}", "invalid_json") from exc
        if type(body) is not dict or "data" not in body:
            raise ApiError(422, 'the body must be a JSON object with a "data" field, e.g. {"data": {...}}', "no_data")
        data = body.pop("data")
        del body
        if max_records is not None and type(data) is list and len(data) > max_records:
            count = len(data)
            del data
            raise ApiError(
                413,
                f"the batch has {count} records; the limit is {max_records} (MAX_BATCH_RECORDS): "
                "send them in several requests",
                "too_many_records",
            )
    return data


def _single(pre: Preprocessor, data: Any, job: Job) -> Answer:
    if type(data) is not dict:
        raise ApiError(
            422,
            f'"data" must be a JSON object (one record), not {_json_type(data)}; send lists to /preprocess/batch',
            "invalid_data",
        )
    job.total = 1
    outputs, failures = pre.apply(tracked([data], range(1), job))
    if failures:
        exc = failures[0]
        raise ApiError(422, f"pre_processing raised {_describe(exc)}", type(exc).__name__, stage=Stage.PREPROCESS)
    try:
        return b'{"result":' + _json(outputs[0]) + b"}", 1, None
    except (TypeError, orjson.JSONEncodeError) as exc:
        message = f"pre_processing returned a value that cannot be serialised to JSON: {exc}"
        raise ApiError(500, message, Stage.SERIALIZE, stage=Stage.SERIALIZE) from exc


ItemError = tuple[int, Stage, str]  # index, stage, message


def _batch(pre: Preprocessor, data: Any, job: Job) -> Answer:
    """The answer to a batch, built chunk by chunk so a request holds little more than its body.

    Outputs are encoded a chunk at a time (a small ``bytes`` per record would cost about 4 KiB each)
    and only the failed records get an error entry.
    """
    if type(data) is not list:
        raise ApiError(422, f'"data" must be a JSON array of records, not {_json_type(data)}', "invalid_data")
    job.total = len(data)
    errors: list[ItemError] = []
    parts = [b'{"results":[']
    for start in range(0, len(data), CHUNK_RECORDS):
        if job.abandoned:
            raise Abandoned
        chunk = data[start : start + CHUNK_RECORDS]
        data[start : start + CHUNK_RECORDS] = [None] * len(chunk)  # let the records go once processed
        encoded = _encode(_apply_chunk(pre, chunk, start, job, errors), start, errors)
        parts += (b",", memoryview(encoded)[1:-1]) if start else (memoryview(encoded)[1:-1],)
        del chunk
    if not errors:
        parts.append(b'],"errors":[]}')
        return b"".join(parts), len(data), None
    errors.sort()
    error_list = [{"index": index, "stage": stage, "error": message} for index, stage, message in errors]
    parts += (b'],"errors":', dumps(error_list), b"}")
    return b"".join(parts), len(data), Counter(stage for _, stage, _ in errors)


def split_objects(records: list[Any], start: int = 0) -> tuple[list[ItemError], range | list[int], list[Any]]:
    """The records that are JSON objects and their positions in ``records``; the others as ``decode``
    errors, numbered from ``start``."""
    if not records or set(map(type, records)) == {dict}:  # a loop in C: the usual case costs little
        return [], range(len(records)), records
    errors: list[ItemError] = [
        (start + index, Stage.DECODE, f"record must be a JSON object, not {_json_type(record)}")
        for index, record in enumerate(records)
        if type(record) is not dict
    ]
    positions = [index for index, record in enumerate(records) if type(record) is dict]
    return errors, positions, [records[index] for index in positions]


def _apply_chunk(pre: Preprocessor, chunk: list[Any], start: int, job: Job, errors: list[ItemError]) -> list[Any]:
    """One result per record of ``chunk`` (None where it failed); failures go to ``errors``."""
    job.chunk = (start, start + len(chunk) - 1)
    job.index = start
    not_objects, positions, objects = split_objects(chunk, start)
    if not not_objects:  # every record an object, as nearly always
        outputs, failures = pre.apply(tracked(chunk, range(start, start + len(chunk)), job))
        for number, exc in failures.items():
            errors.append((start + number, Stage.PREPROCESS, f"pre_processing raised {_describe(exc)}"))
            outputs[number] = None
        return outputs
    errors.extend(not_objects)
    results: list[Any] = [None] * len(chunk)
    outputs, failures = pre.apply(tracked(objects, [start + i for i in positions], job))
    for position, value in zip(positions, outputs, strict=True):
        results[position] = value
    for number, exc in failures.items():
        errors.append((start + positions[number], Stage.PREPROCESS, f"pre_processing raised {_describe(exc)}"))
        results[positions[number]] = None
    return results


def _json(value: Any) -> bytes:
    """``value`` as JSON: plain orjson for JSON's own types (the usual output, and the fastest), else the
    runtime's serialisation (numpy, non-string keys, sets...), which raises when it cannot."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return dumps(value)


def _encode(results: list[Any], start: int, errors: list[ItemError]) -> bytes:
    """``results`` as one JSON array; a value that cannot be serialised becomes null and an error."""
    try:
        return _json(results)
    except (TypeError, orjson.JSONEncodeError):
        pass
    for position, value in enumerate(results):
        try:
            dumps(value)
        except (TypeError, orjson.JSONEncodeError) as exc:
            results[position] = None
            errors.append((start + position, Stage.SERIALIZE, f"output cannot be serialised: {exc}"))
    return dumps(results)


def _describe(exc: BaseException) -> str:
    """The exception and its place in user code, without the credentials of URLs in its message."""
    return redact(describe_exception(exc))


def _timeout_error(job: Job, settings: Settings, pre: Preprocessor) -> ApiError:
    limit = f"REQUEST_TIMEOUT_S={settings.request_timeout_s:g}s"
    if job.started == 0.0:
        return ApiError(
            504,
            f"no thread was free for pre_processing within {limit}: all {settings.api_threads} (API_THREADS) "
            "are busy; no record was started. Retry later, or raise API_THREADS or API_WORKERS",
            Stage.TIMEOUT,
        )
    where = f"record {job.index}"
    if job.index is None:
        where = "the body's JSON (no record started yet)"
    elif job.total > 1:
        where += f" of {job.total} (index {job.index})"
    if pre.loaded.batch_function is not None and job.chunk is not None:
        where = f"records {job.chunk[0]} to {job.chunk[1]} of {job.total} (pre_processing_batch, then one by one)"
    return ApiError(
        504,
        f"pre_processing did not finish within {limit}; it was on {where}. Its thread stays busy until "
        "pre_processing returns. Make pre_processing faster, send smaller batches or raise REQUEST_TIMEOUT_S",
        Stage.TIMEOUT,
        job.index,
    )


def _failed(states: Mapping[str, Any], checks: Mapping[str, Any]) -> dict[str, Any] | None:
    """The answer of a process whose component failed for good, or None."""
    for name in checks:
        state = states[name]
        if state.get("state") == "failed":
            return {"status": "failed", "error": state.get("error"), name: state}
    return None


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
