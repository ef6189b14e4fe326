"""A pool of at most MAX_CONCURRENT_BUILDS builds; further builds queue. Each can be cancelled."""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from mlprep.build import publish
from mlprep.build.api.store import CANCELLED, FAILED, PENDING, RUNNING, SUCCESS, BuildStore, now
from mlprep.build.fetch import tracking_uri
from mlprep.build.images import BuildOptions, build_model_image, build_preprocessing_image, dockerfiles
from mlprep.errors import MlprepError


class LogSink:
    """Collects build log lines and writes them to the database about once a second."""

    def __init__(self, store: BuildStore, build_id: str, every: float = 1.0) -> None:
        self.store, self.build_id, self.every = store, build_id, every
        self.lines: list[str] = []
        self.last = time.monotonic()

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        if time.monotonic() - self.last >= self.every:
            self.flush()

    def flush(self) -> None:
        if self.lines:
            self.store.append_log(self.build_id, "\n".join(self.lines) + "\n")
            self.lines = []
        self.last = time.monotonic()


class BuildQueue:
    def __init__(self, store: BuildStore, workers: int, registry: str | None = None) -> None:
        self.store, self.registry = store, registry
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="build")
        self.cancels: dict[str, threading.Event] = {}
        self.futures: dict[str, Future[None]] = {}
        self._lock = threading.Lock()

    def submit(self, build_id: str) -> Future[None]:
        with self._lock:
            self.cancels[build_id] = threading.Event()
            future = self.executor.submit(self._run, build_id)
            self.futures[build_id] = future
        future.add_done_callback(lambda _: self._forget(build_id))
        return future

    def _forget(self, build_id: str) -> None:
        with self._lock:
            self.cancels.pop(build_id, None)
            self.futures.pop(build_id, None)

    def cancel(self, build_id: str, wait: float = 60.0) -> bool:
        """Cancel a pending or running build; True if it was active. Waits for a running one to stop."""
        record = self.store.get(build_id)
        if record is None or record["status"] not in (PENDING, RUNNING):
            return False
        with self._lock:
            event, future = self.cancels.get(build_id), self.futures.get(build_id)
        if event is not None:
            event.set()
        if record["status"] == PENDING:
            self.store.update(build_id, status=CANCELLED, finished_at=now(), error="cancelled before it started")
        if future is not None:
            with contextlib.suppress(Exception):  # the outcome is recorded by _run
                future.result(timeout=wait)
        return True

    def shutdown(self) -> None:
        for event in list(self.cancels.values()):
            event.set()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def _run(self, build_id: str) -> None:
        if not self.store.start(build_id):
            return  # cancelled while it waited
        record = self.store.get(build_id)
        if record is None:
            return
        cancel = self.cancels.get(build_id) or threading.Event()
        sink = LogSink(self.store, build_id)
        begin = time.monotonic()
        fields: dict[str, object] = {}
        try:
            if record["alias"]:
                fields.update(self._promote(record, sink, cancel))
            else:
                fields.update(self._build(record, sink, cancel, bool(record["push"])))
            fields.update(status=SUCCESS)
        except Exception as exc:
            if cancel.is_set():
                fields.update(status=CANCELLED, error="cancelled")
            elif isinstance(exc, MlprepError):
                fields.update(status=FAILED, error=str(exc))
            else:
                sink("".join(traceback.format_exception(exc)))
                fields.update(status=FAILED, error=f"{type(exc).__name__}: {exc}")
        finally:
            sink.flush()
            self.store.update(build_id, finished_at=now(), seconds=round(time.monotonic() - begin, 3), **fields)

    def _build(self, record: dict[str, Any], log: LogSink, cancel: threading.Event, push: bool) -> dict[str, Any]:
        """The preprocessing image, then the model image if asked; pushed and recorded with ``push``."""
        options = BuildOptions(
            run_id=record["run_id"],
            image_name=record["image_name"],
            tag=record["tag"],
            preprocessing_path=record["preprocessing_path"],
            python_version=record["python_version"],
            base_image=record["base_image"],
            dockerfile=dockerfiles()[record["dockerfile"]] if record["dockerfile"] else None,
            no_cache=bool(record["no_cache"]),
            push=push,
            registry=self.registry,
        )
        result = build_preprocessing_image(options, log=log, cancel=cancel)
        fields: dict[str, Any] = {
            "image": result.reference,
            "image_digest": result.digest,
            "size_bytes": result.size_bytes,
        }
        if record["model_source"]:
            log(f"building the model image of {record['model_source']}")
            model = build_model_image(
                record["model_source"],
                record["model_image_name"],
                record["tag"],
                record["base_image"],
                record["python_version"],
                log=log,
                cancel=cancel,
                push=push,
                registry=self.registry,
            )
            fields.update(model_image=model.reference, model_image_digest=model.digest)
        return fields

    def _promote(self, record: dict[str, Any], log: LogSink, cancel: threading.Event) -> dict[str, Any]:
        """Tag the version's pushed images ``:alias`` by digest and push them; build them first if missing."""
        alias, source = record["alias"], record["model_source"]
        known = publish.images_of(source, tracking_uri())
        digests = {kind: known.get(kind, {}).get(publish.DIGEST_TAG) for kind in ("preprocessing", "model")}
        if all(digests.values()):
            log(f"promoting {source} to {alias}: its images are pushed, re-tagging them")
        else:
            log(f"promoting {source} to {alias}: its images are not pushed yet, building them first")
            built = self._build({**record, "tag": "latest"}, log, cancel, push=True)
            digests = {"preprocessing": built["image_digest"], "model": built["model_image_digest"]}
        image = publish.retag(str(digests["preprocessing"]), alias, log, cancel)
        model = publish.retag(str(digests["model"]), alias, log, cancel)
        return {
            "image": image.reference,
            "image_digest": image.digest,
            "model_image": model.reference,
            "model_image_digest": model.digest,
        }
