"""Prometheus metrics of the REST front end, through prometheus_client.

With several server processes (``API_WORKERS`` > 1) each process writes its figures to files in
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` adds every process up, so whichever process answers a
scrape, counters never go backwards (Prometheus ``rate()`` stays right). With one process, the
figures are plain Python counts, updated on the event loop only and handed to prometheus_client when
scraped: a request's four updates of prometheus_client's locked values cost about as much as the
rest of the request's own bookkeeping.
"""

from __future__ import annotations

import itertools
import os
import threading
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own variable


HELP = {
    "requests": "Preprocessing requests by endpoint and HTTP status.",
    "records": "Records received for preprocessing.",
    "errors": "Records that failed, by the stage they failed at (decode, preprocess, serialize, timeout).",
    "latency": "Request latency.",
    "model_latency": "Time the model took on a request's preprocessed records (one call per request).",
}


class Metrics:
    """Requests by endpoint and status, records and failed records by endpoint, request latency."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._included: list[Collector] = []
        if not os.environ.get(MULTIPROCESS_DIR):
            tallies = _Tallies()
            self.registry.register(tallies)
            self.observe = tallies.observe  # type: ignore[method-assign]
            self.observe_model = tallies.observe_model  # type: ignore[method-assign]
            return
        self.requests = Counter(
            "mlprep_requests",
            HELP["requests"],
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.records = Counter("mlprep_records", HELP["records"], ["endpoint"], registry=self.registry)
        self.errors = Counter(
            "mlprep_record_errors",
            HELP["errors"],
            ["endpoint", "stage"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mlprep_request_duration_seconds",
            HELP["latency"],
            ["endpoint"],
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.model_latency = Histogram(
            "mlprep_model_duration_seconds",
            HELP["model_latency"],
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

    def observe_model(self, endpoint: str, seconds: float) -> None:
        """One call of the served model (from the event loop or a pool thread)."""
        self.model_latency.labels(endpoint).observe(seconds)

    def include(self, collector: Collector) -> None:
        """Another part of the process (the Kafka processor) whose series ``/metrics`` adds, in either mode."""
        self.registry.register(collector)
        self._included.append(collector)

    def render(self) -> bytes:
        """The exposition text: this process's figures, or every process's when they share a folder
        (plus what this process includes: its collectors read state at scrape time)."""
        if os.environ.get(MULTIPROCESS_DIR):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            for collector in self._included:
                registry.register(collector)
            return generate_latest(registry)
        return generate_latest(self.registry)


class _Tallies:
    """The figures of a single process as plain counts, exposed to prometheus_client when collected.

    Updated and collected on the event loop only (``observe`` runs in the request handlers, ``collect``
    in ``/metrics``), so they need no lock.
    """

    def __init__(self) -> None:
        self.requests: Tally[tuple[str, int]] = Tally()
        self.records: Tally[str] = Tally()
        self.errors: Tally[tuple[str, str]] = Tally()
        self.latency: dict[str, tuple[list[int], list[float]]] = {}  # endpoint: counts per bucket, [sum]
        self.model_latency: dict[str, tuple[list[int], list[float]]] = {}
        self._model_lock = threading.Lock()  # the model runs in pool threads too

    def observe(
        self, endpoint: str, status: int, seconds: float, records: int = 0, errors: Mapping[str, int] | None = None
    ) -> None:
        self.requests[endpoint, status] += 1
        if records:
            self.records[endpoint] += records
        if errors:
            for stage, count in errors.items():
                self.errors[endpoint, str(stage)] += count
        _count(self.latency, endpoint, seconds)

    def observe_model(self, endpoint: str, seconds: float) -> None:
        with self._model_lock:
            _count(self.model_latency, endpoint, seconds)

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("mlprep_requests", HELP["requests"], labels=["endpoint", "status"])
        for (endpoint, status), count in sorted(self.requests.items()):
            requests.add_metric([endpoint, str(status)], count)
        records = CounterMetricFamily("mlprep_records", HELP["records"], labels=["endpoint"])
        for endpoint, count in sorted(self.records.items()):
            records.add_metric([endpoint], count)
        errors = CounterMetricFamily("mlprep_record_errors", HELP["errors"], labels=["endpoint", "stage"])
        for (endpoint, stage), count in sorted(self.errors.items()):
            errors.add_metric([endpoint, stage], count)
        yield from (requests, records, errors)
        yield _histogram("mlprep_request_duration_seconds", HELP["latency"], self.latency)
        if self.model_latency:
            with self._model_lock:
                yield _histogram("mlprep_model_duration_seconds", HELP["model_latency"], self.model_latency)


def _count(histograms: dict[str, tuple[list[int], list[float]]], endpoint: str, seconds: float) -> None:
    histogram = histograms.get(endpoint)
    if histogram is None:
        histogram = histograms[endpoint] = ([0] * (len(BUCKETS) + 1), [0.0])
    histogram[0][bisect_left(BUCKETS, seconds)] += 1  # the first bucket whose bound is >= seconds
    histogram[1][0] += seconds


def _histogram(name: str, text: str, histograms: dict[str, tuple[list[int], list[float]]]) -> Metric:
    family = HistogramMetricFamily(name, text, labels=["endpoint"])
    bounds = [floatToGoString(bound) for bound in BUCKETS] + ["+Inf"]
    for endpoint, (counts, total) in sorted(histograms.items()):
        family.add_metric([endpoint], list(zip(bounds, itertools.accumulate(counts), strict=True)), total[0])
    return family
