"""``--workers N``: N consumer processes of one front end, in one consumer group, on one host.

A batch loop runs Python (the preprocessing, the encoding) under one GIL: N processes use N cores. Kafka
shares the input's partitions among them as among processes on different hosts, so the same rules hold
(each process gets partitions only while partitions >= consumers). The parent keeps the HTTP side (the
REST API of the processor, the bridge's ``/health``) and reports every worker: ``/health`` adds their
counts up and lists each one, ``/metrics`` gives each worker's series with a ``worker`` label. A worker
that fails makes the whole process fail (503, exit 1), so that its supervisor restarts it.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from mlprep.errors import MlprepError
from mlprep.settings import Settings

if TYPE_CHECKING:
    from mlprep.kafka.loop import BatchLoop

log = logging.getLogger("mlprep.kafka")
Builder = Callable[..., "BatchLoop"]
REPORT_EVERY_S = 0.5
# Counts that add up across workers; the other keys of a loop's state are merged one by one below.
_SUMMED = (
    "consumed",
    "out",
    "dropped",
    "dead_lettered",
    "produced",
    "truncated",
    "committed_batches",
    "aborted_transactions",
    "rebalances",
    "retries",
    "waited_seconds",
)


def _work(name: str, build: Builder, settings: Settings, extra: tuple[Any, ...], index: int, reports: Any) -> None:
    """One worker process: ``build(settings, index, *extra)``'s loop, its state and metrics reported."""
    from mlprep.redaction import redact_logs

    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(name)s[{index}] %(levelname)s %(message)s")
    redact_logs()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into SIGTERM for every worker
    loop = build(settings, index, *extra)
    signal.signal(signal.SIGTERM, lambda *_: loop.stop())
    done = threading.Event()

    def report() -> None:
        reports.put((index, loop.health(), list(loop.metrics.collect())))

    def keep_reporting() -> None:
        while not done.wait(REPORT_EVERY_S):
            report()

    threading.Thread(target=keep_reporting, daemon=True).start()
    try:
        loop.run()
    finally:
        done.set()
        report()
        reports.close()
        reports.join_thread()


class WorkerPool:
    """N worker processes seen as one loop: ``run()``, ``stop()``, ``health()``, ``failed``, ``metrics``."""

    def __init__(self, name: str, build: Builder, settings: Settings, count: int, *extra: Any) -> None:
        """``build(settings, index, *extra)`` makes worker ``index``'s loop (a module-level function: it
        is sent to a new interpreter)."""
        self.name, self.build, self.settings, self.count, self.extra = name, build, settings, count, extra
        self._context = multiprocessing.get_context("spawn")  # no fork of the parent's threads and clients
        self._reports = self._context.Queue()
        self._states: dict[int, dict[str, Any]] = {}
        self._snapshots: dict[int, list[Metric]] = {}
        self._processes: list[Any] = []
        self._stopping = threading.Event()
        self._error: str | None = None
        self.metrics = _WorkerMetrics(self._snapshots)

    def run(self) -> None:
        """Starts the workers and blocks until they all exit; raises when one failed."""
        for index in range(self.count):
            process = self._context.Process(
                target=_work,
                args=(self.name, self.build, self.settings, self.extra, index, self._reports),
                name=f"mlprep-{self.name}-{index}",
            )
            process.start()
            self._processes.append(process)
        log.warning("%s: %d workers (pids %s)", self.name, self.count, [p.pid for p in self._processes])
        while any(p.is_alive() for p in self._processes):
            self._read_reports(timeout=0.2)
            for index, process in enumerate(self._processes):
                if process.exitcode not in (None, 0) and self._error is None:
                    self._error = f"worker {index} (pid {process.pid}) exited with status {process.exitcode}"
                    log.error("%s: %s; stopping the other workers", self.name, self._error)
                    self.stop()
        self._read_reports(timeout=0)
        if self._error is None and not self._stopping.is_set():
            self._error = "every worker exited"
        if self._error is not None:
            raise MlprepError(f"{self.name}: {self._error}")

    def stop(self) -> None:
        """SIGTERM to every worker (each drains: flush, commit), SIGKILL to one still there after 60 s."""
        self._stopping.set()
        for process in self._processes:
            if process.is_alive():
                process.terminate()
        threading.Thread(target=self._reap, daemon=True).start()

    def _reap(self) -> None:
        deadline = time.monotonic() + 60
        for process in self._processes:
            process.join(max(deadline - time.monotonic(), 0))
            if process.is_alive():
                process.kill()

    def _read_reports(self, timeout: float) -> None:
        with contextlib.suppress(queue.Empty):
            while True:
                index, state, snapshot = self._reports.get(timeout=timeout)
                self._states[index], self._snapshots[index] = state, snapshot
                timeout = 0

    @property
    def failed(self) -> bool:
        return self._error is not None or any(s.get("state") == "failed" for s in self._states.values())

    def health(self) -> dict[str, Any]:
        """The workers' states added up, and each one's in ``workers``; the model served, if any."""
        states = [self._states[i] for i in sorted(self._states)]
        merged: dict[str, Any] = {key: sum(s.get(key, 0) for s in states) for key in _SUMMED}
        lags = [s.get("lag") for s in states]
        by_partition: dict[int, int] = {}
        dead_by_stage: dict[str, int] = {}
        seconds: dict[str, float] = {}
        for state in states:
            by_partition.update(state.get("lag_by_partition", {}))
            for stage, n in state.get("dead_by_stage", {}).items():
                dead_by_stage[stage] = dead_by_stage.get(stage, 0) + n
            for step, spent in state.get("seconds", {}).items():
                seconds[step] = seconds.get(step, 0.0) + spent
        running = len(states) == self.count and all(s.get("state") == "running" for s in states)
        merged.update(
            state="failed" if self.failed else "running" if running else (states[0]["state"] if states else "starting"),
            ready=len(states) == self.count and all(s.get("ready") for s in states) and not self.failed,
            topic=states[0]["topic"] if states else self.settings.input_topic,
            guarantee=states[0]["guarantee"] if states else self.settings.processing_guarantee,
            partitions=sorted({p for s in states for p in s.get("partitions", [])}),
            lag=None if not lags or None in lags else sum(lags),
            lag_by_partition=by_partition,
            dead_by_stage=dead_by_stage,
            seconds=seconds,
            waiting=next((s["waiting"] for s in states if s.get("waiting")), None),
            error=self._error or next((s["error"] for s in states if s.get("error")), None),
            workers=[
                {
                    "worker": i,
                    "pid": self._processes[i].pid if i < len(self._processes) else None,
                    **{k: self._states[i].get(k) for k in ("state", "partitions", "consumed", "lag", "error")},
                    **(
                        {"model_version": self._states[i]["model"].get("version")} if "model" in self._states[i] else {}
                    ),
                }
                for i in sorted(self._states)
            ],
        )
        models = [s["model"] for s in states if "model" in s]
        if models:  # each worker serves the model it loaded: the first one's state, each one's version above
            merged["model"] = models[0]
        return merged


class _WorkerMetrics(Collector):
    """Each worker's last reported series, labelled ``worker``; sum them in queries (``sum by ()``)."""

    def __init__(self, snapshots: dict[int, list[Metric]]) -> None:
        self.snapshots = snapshots

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for index, snapshot in sorted(self.snapshots.items()):
            for family in snapshot:
                merged = families.get(family.name)
                if merged is None:
                    merged = families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
                for sample in family.samples:
                    labels = {**sample.labels, "worker": str(index)}
                    merged.add_sample(sample.name, labels, sample.value, sample.timestamp, sample.exemplar)
        yield from families.values()
