"""The build API: start, follow, list and cancel image builds; MLflow webhooks start them too.

Builds are kept in a database and survive a restart (a build interrupted by the restart is marked
failed, pending ones are queued again). With BUILD_API_TOKEN set, every mutating endpoint needs
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import orjson
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError
from starlette.concurrency import run_in_threadpool

from mlprep import __version__
from mlprep.build import docker_cli
from mlprep.build.api.store import ACTIVE, BuildStore, now
from mlprep.build.api.webhooks import WebhookRejected, builds_for, find_run_id, verify
from mlprep.build.fetch import check_reachable, tracking_uri
from mlprep.build.images import check_model_source, check_python_version, dockerfiles
from mlprep.build.naming import (
    AUTO,
    check_artifact_path,
    check_image_name,
    check_image_reference,
    check_run_id,
    check_tag,
    without_credentials,
)
from mlprep.errors import MlprepError
from mlprep.redaction import redact, redact_logs
from mlprep.settings import Settings, load_settings

Status = Literal["pending", "running", "success", "failed", "cancelled"]


_FIELD_CHECKS = {
    "run_id": check_run_id,
    "tag": check_tag,
    "preprocessing_path": check_artifact_path,
    "python_version": check_python_version,
    "base_image": check_image_reference,
    "model_source": check_model_source,
    "model_image_name": check_image_name,
    "alias": check_tag,
}


class BuildRequest(BaseModel):
    """A build of the preprocessing image of ``run_id`` (and, with ``model_source``, the model image)."""

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(..., max_length=64, examples=["e6c1131f4673449aa688ed1ffc3abbbe"])
    image_name: str = Field(AUTO, max_length=255, description="image name, or 'auto' for {type}-{model_name}-{version}")
    tag: str = Field("latest", max_length=128)
    preprocessing_path: str = Field("preprocessing.py", max_length=1024)
    python_version: str = Field("3.11", max_length=8)
    base_image: str | None = Field(
        None, max_length=512, description="FROM image; default MLPREP_BASE_IMAGE or python:<v>-slim"
    )
    dockerfile: str | None = Field(None, max_length=128, description="name of one of the project's docker/ files")
    model_source: str | None = Field(
        None, max_length=1024, description="also build the model image: models:/NAME/VERSION ..."
    )
    model_image_name: str | None = Field(None, max_length=255)
    no_cache: bool = False
    push: bool | None = Field(
        None, description="push the images and record their digests in MLflow (default MLPREP_PUSH_IMAGES)"
    )
    alias: str | None = Field(
        None,
        max_length=128,
        description="promote: tag the pushed images of model_source as :alias and push (built first if missing)",
    )

    @field_validator(*_FIELD_CHECKS, mode="after")
    @classmethod
    def _valid(cls, value: Any, info: Any) -> Any:
        return value if value is None else _FIELD_CHECKS[info.field_name](value)

    @field_validator("image_name", mode="after")
    @classmethod
    def _image_name(cls, value: str) -> str:
        return value if value == AUTO else check_image_name(value)

    @model_validator(mode="after")
    def _alias_needs_a_model(self) -> BuildRequest:
        if self.alias and not self.model_source:
            raise ValueError("alias: a promotion needs model_source (models:/NAME/VERSION)")
        return self

    @field_validator("dockerfile", mode="after")
    @classmethod
    def _dockerfile(cls, value: str | None) -> str | None:
        known = dockerfiles()
        if value is not None and value not in known:
            raise ValueError(f"unknown Dockerfile {value!r}: choose one of {', '.join(known)} (docker/)")
        return value


class BuildAccepted(BaseModel):
    build_id: str
    status: Status
    message: str


MAX_BODY_BYTES = 64 * 1024  # a build request or a webhook event is a few hundred bytes


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    redact_logs()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from mlprep.build.api.worker import BuildQueue

        store = BuildStore(settings.build_api_database_url)
        queue = BuildQueue(store, settings.max_concurrent_builds, settings.registry)
        for build_id in store.recover():
            queue.submit(build_id)
        app.state.store, app.state.queue = store, queue
        yield
        queue.shutdown()

    app = FastAPI(
        title="mlprep build API",
        version=__version__,
        lifespan=lifespan,
        description="Builds the Docker images of MLflow runs (preprocessing) and models.",
    )
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)

    def authorised(request: Request) -> None:
        token = settings.build_api_token
        if token and not _bearer_matches(request, token):
            raise HTTPException(
                401,
                "missing or wrong bearer token (Authorization: Bearer <BUILD_API_TOKEN>)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def store() -> BuildStore:
        return app.state.store

    def enqueue(fields: dict[str, Any], trigger: str) -> tuple[dict[str, Any], bool]:
        """A new pending build, or the active one of the same run, image and tag (no second build)."""
        fields["base_image"] = fields.get("base_image") or settings.mlprep_base_image
        record, new = store().create_unless_active(fields, trigger)
        if new:
            app.state.queue.submit(record["id"])
        return record, new

    def request_fields(body: BuildRequest) -> dict[str, Any]:
        fields = body.model_dump()
        fields["no_cache"] = int(fields["no_cache"])
        # a promotion pushes whatever the setting says: an alias only exists in a registry
        pushing = settings.push_images if fields["push"] is None else fields["push"]
        fields["push"] = int(bool(pushing or fields["alias"]))
        return fields

    @app.get("/", summary="API information")
    async def info() -> dict[str, Any]:
        return {
            "name": "mlprep build API",
            "version": __version__,
            "links": {
                "docs": "/docs",
                "openapi": "/openapi.json",
                "health": "/health",
                "ready": "/ready",
                "builds": "/builds",
                "build": "/build",
                "mlflow_webhook": "/webhooks/mlflow",
                "dispatch": "/webhooks/dispatch",
            },
        }

    @app.get("/health", summary="Health, with Docker engine and MLflow reachability")
    async def health() -> JSONResponse:
        checks = await asyncio.gather(
            run_in_threadpool(_docker_state),
            run_in_threadpool(_mlflow_state),
            run_in_threadpool(_database_state, store()),
        )
        body = dict(zip(("docker", "mlflow", "database"), checks, strict=True))
        healthy = all(part["ok"] for part in body.values())
        active = len([b for b in store().list() if b["status"] in ACTIVE])
        return JSONResponse(
            {
                "status": "ok" if healthy else "degraded",
                "active_builds": active,
                "max_concurrent_builds": settings.max_concurrent_builds,
                **body,
            },
            status_code=200 if body["database"]["ok"] else 503,
        )

    @app.get("/ready", summary="Readiness: the database answers (builds can be recorded and queued)")
    async def ready() -> JSONResponse:
        database = await run_in_threadpool(_database_state, store())
        return JSONResponse({"ready": database["ok"], "database": database}, status_code=200 if database["ok"] else 503)

    @app.post(
        "/build",
        status_code=202,
        response_model=BuildAccepted,
        dependencies=[Depends(authorised)],
        summary="Start a build and answer at once",
    )
    async def start_build(body: BuildRequest) -> BuildAccepted:
        record, new = await run_in_threadpool(enqueue, request_fields(body), "api")
        message = "build queued" if new else f"a build of this run and tag is already {record['status']}"
        return BuildAccepted(build_id=record["id"], status=record["status"], message=message)

    @app.post("/build/sync", dependencies=[Depends(authorised)], summary="Build and answer when done")
    async def build_sync(body: BuildRequest) -> JSONResponse:
        record, _ = await run_in_threadpool(enqueue, request_fields(body), "api-sync")
        future = app.state.queue.futures.get(record["id"])
        if future is not None:
            await asyncio.wrap_future(future)
        final = store().get(record["id"])
        if final is None:
            raise HTTPException(404, f"build {record['id']} was deleted while it ran")
        return JSONResponse(_public(final, with_log=True))  # "status" and "error" tell how it ended

    @app.get("/builds", dependencies=[Depends(authorised)], summary="List builds, newest first")
    async def list_builds(status: Status | None = Query(None)) -> list[dict[str, Any]]:  # noqa: B008
        return [_public(b) for b in await run_in_threadpool(store().list, status)]

    @app.get(
        "/builds/{build_id}",
        dependencies=[Depends(authorised)],
        summary="A build: status, image, timings, error and log",
    )
    async def get_build(build_id: str, tail: int | None = Query(None, ge=1, le=100_000)) -> dict[str, Any]:
        record = await run_in_threadpool(store().get, build_id)
        if record is None:
            raise HTTPException(404, f"no build {build_id}")
        return _public(record, with_log=True, tail=tail)

    @app.delete("/builds/{build_id}", dependencies=[Depends(authorised)], summary="Cancel if running, then remove")
    async def delete_build(build_id: str) -> dict[str, Any]:
        if await run_in_threadpool(store().get, build_id) is None:
            raise HTTPException(404, f"no build {build_id}")
        # No waiting for a running build to stop: it is told to, and its outcome goes nowhere.
        cancelled = await run_in_threadpool(app.state.queue.cancel, build_id, 0)
        await run_in_threadpool(store().delete, build_id)
        return {"build_id": build_id, "cancelled": cancelled, "deleted": True}

    @app.post("/webhooks/mlflow", summary="MLflow Model Registry webhook (signed with MLFLOW_WEBHOOK_SECRET)")
    async def mlflow_webhook(request: Request) -> JSONResponse:
        secret = settings.mlflow_webhook_secret
        if not secret:
            raise HTTPException(503, "MLFLOW_WEBHOOK_SECRET is not set: signed webhooks cannot be verified")
        body = await request.body()
        try:
            delivery_id = verify(secret, request.headers, body, settings.webhook_tolerance_seconds)
        except WebhookRejected as exc:
            raise HTTPException(exc.status, str(exc)) from exc
        if not await run_in_threadpool(store().remember_delivery, delivery_id):
            raise HTTPException(409, f"delivery {delivery_id} was already received (replay refused)")
        horizon = now() - dt.timedelta(seconds=2 * settings.webhook_tolerance_seconds)
        await run_in_threadpool(store().forget_deliveries_before, horizon)
        return await handle_event(body, "mlflow-webhook")

    @app.post("/webhooks/dispatch", summary="The same event relayed without MLflow's signature (bearer token)")
    async def dispatch_webhook(request: Request) -> JSONResponse:
        if not settings.build_api_token:
            raise HTTPException(503, "BUILD_API_TOKEN is not set: relayed webhooks are refused")
        authorised(request)
        return await handle_event(await request.body(), "dispatch")

    async def handle_event(body: bytes, trigger: str) -> JSONResponse:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise HTTPException(400, f"the body is not JSON: {exc}") from exc
        if isinstance(payload, dict) and isinstance(payload.get("client_payload"), dict):
            payload = payload["client_payload"]  # a whole repository_dispatch body
        try:
            wanted = await run_in_threadpool(builds_for, payload, find_run_id, settings.promote_aliases)
        except WebhookRejected as exc:
            raise HTTPException(exc.status, str(exc)) from exc
        if wanted is None:
            event = f"{payload.get('entity')}.{payload.get('action')}" if isinstance(payload, dict) else "?"
            return JSONResponse({"status": "ignored", "event": event})
        try:  # the same checks as a build requested by hand (image names made from model names)
            request = BuildRequest(**wanted)
        except PydanticValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise HTTPException(422, f"the event asks for a build that is refused: {problems}") from exc
        record, new = await run_in_threadpool(enqueue, request_fields(request), trigger)
        tag = wanted.get("alias") or "latest"
        return JSONResponse(
            {
                "status": "accepted" if new else "already-active",
                "build_id": record["id"],
                "image": f"{wanted['image_name']}:{tag}",
                "model_image": f"{wanted['model_image_name']}:{tag}",
            },
            status_code=202,
        )

    return app


def _bearer_matches(request: Request, token: str) -> bool:
    scheme, _, provided = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(provided.strip().encode(), token.encode())


_PRIVATE = ("id", "log", "active_key")


def _public(record: dict[str, Any], with_log: bool = False, tail: int | None = None) -> dict[str, Any]:
    out = {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in record.items() if k not in _PRIVATE}
    out = {"build_id": record["id"], **out, "no_cache": bool(record.get("no_cache")), "push": bool(record.get("push"))}
    if with_log:
        log = record.get("log") or ""
        out["log"] = "\n".join(log.splitlines()[-tail:]) if tail else log
    return out


def _docker_state() -> dict[str, Any]:
    try:
        return {"ok": True, "engine": docker_cli.engine_version()}
    except (MlprepError, OSError) as exc:
        return {"ok": False, "error": redact(str(exc))}
    except Exception as exc:  # timeouts of the CLI
        return {"ok": False, "error": redact(f"{type(exc).__name__}: {exc}")}


def _mlflow_state() -> dict[str, Any]:
    uri = tracking_uri()
    try:
        check_reachable(uri, timeout=3)
    except MlprepError as exc:
        return {"ok": False, "tracking_uri": without_credentials(uri), "error": str(exc)}
    return {"ok": True, "tracking_uri": without_credentials(uri)}


def _database_state(store: BuildStore) -> dict[str, Any]:
    try:
        store.list(limit=1)
    except Exception as exc:
        return {"ok": False, "error": redact(f"{type(exc).__name__}: {exc}")}
    return {"ok": True, "url": without_credentials(store.url)}


class BodyLimit:
    """Refuse bodies over ``limit`` bytes with 413, whether announced (Content-Length) or streamed."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"request body over {self.limit} bytes: build requests and events are small"
        length = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:
            return await JSONResponse({"detail": message}, 413)(scope, receive, send)
        seen = 0

        async def limited() -> dict[str, Any]:
            nonlocal seen
            received = await receive()
            seen += len(received.get("body", b""))
            if seen > self.limit:  # a chunked body that lied by omission: the handler answers 413
                raise HTTPException(413, message)
            return received

        await self.app(scope, limited, send)
