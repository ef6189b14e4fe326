"""Prometheus metrics of the REST front end, through prometheus_client.

With several server processes (``API_WORKERS`` > 1) each process writes its figures to files in
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` adds every process up, so whichever process answers a
scrape, counters never go backwards (Prometheus ``rate()`` stays right).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own variable


class Metrics:
    """Requests by endpoint and status, records and failed records by endpoint, request latency."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mlprep_requests",
            "Preprocessing requests by endpoint and HTTP status.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.records = Counter(
            "mlprep_records", "Records received for preprocessing.", ["endpoint"], registry=self.registry
        )
        self.errors = Counter(
            "mlprep_record_errors",
            "Records that failed, by the stage they failed at (decode, preprocess, serialize, timeout).",
            ["endpoint", "stage"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mlprep_request_duration_seconds",
            "Request latency.",
            ["endpoint"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._children: dict[tuple[str, int], tuple[Any, Any, Any]] = {}

    def observe(
        self, endpoint: str, status: int, seconds: float, records: int = 0, errors: Mapping[str, int] | None = None
    ) -> None:
        children = self._children.get((endpoint, status))
        if children is None:  # looking labels up costs more than counting: once per endpoint and status
            children = (self.requests.labels(endpoint, str(status)), self.records.labels(endpoint))
            children += (self.latency.labels(endpoint),)
            self._children[endpoint, status] = children
        requests, counted, latency = children
        requests.inc()
        if records:
            counted.inc(records)
        if errors:
            for stage, count in errors.items():
                self.errors.labels(endpoint, stage).inc(count)
        latency.observe(seconds)

    def render(self) -> bytes:
        """The exposition text: this process's figures, or every process's when they share a folder."""
        if os.environ.get(MULTIPROCESS_DIR):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
