"""A loop in a thread beside an HTTP server in the main thread: the processor with its REST API, the
bridge with its ``/health``, ``/ready`` and ``/metrics``. SIGTERM or SIGINT drains the loop, then exits."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from mlprep.kafka.loop import BatchLoop
from mlprep.runtime.serialization import dumps

if TYPE_CHECKING:
    from mlprep.kafka.workers import WorkerPool

JSON = "application/json"


class _Server(uvicorn.Server):
    """uvicorn's Server without its signal capture: it re-raises SIGTERM after shutdown, which would kill
    the process before the loop drains. SIGTERM and SIGINT are handled by ``serve_beside``."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


def serve_beside(loop: BatchLoop | WorkerPool, app: Any, host: str, port: int, access_log: bool = False) -> int:
    """Runs ``loop`` in a thread and ``app`` until a signal or the loop's failure; 1 if the loop failed
    (logged by the loop), so that a supervisor restarts the process, else 0."""
    outcome: dict[str, BaseException] = {}
    server = _Server(uvicorn.Config(app, host=host, port=port, access_log=access_log))

    def consume() -> None:
        try:
            loop.run()
        except BaseException as exc:  # logged by the loop
            outcome["error"] = exc
            server.should_exit = True

    worker = threading.Thread(target=consume, name=f"kafka-{loop.name}", daemon=True)
    worker.start()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: setattr(server, "should_exit", True))
    server.run()
    loop.stop()
    worker.join(timeout=60)
    return 1 if "error" in outcome else 0


def health_app(loop: BatchLoop | WorkerPool) -> FastAPI:
    """``/health`` (503 once the loop failed), ``/ready`` (503 until partitions are assigned and while
    the loop waits under backpressure) and ``/metrics`` of a loop without a REST API (the bridge)."""
    app = FastAPI(title=f"mlprep {loop.name}", docs_url=None, redoc_url=None)
    registry = CollectorRegistry()
    registry.register(loop.metrics)

    @app.get("/health")
    def health() -> Response:
        state = loop.health()
        return Response(dumps({loop.name: state}), status_code=503 if loop.failed else 200, media_type=JSON)

    @app.get("/ready")
    def ready() -> Response:
        state = loop.health()
        body = {"ready": bool(state["ready"]), "waiting": state["waiting"]}
        return Response(dumps(body), status_code=200 if state["ready"] else 503, media_type=JSON)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
