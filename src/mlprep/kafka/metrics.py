"""Prometheus metrics of the processor and the bridge (prometheus_client): counters read from the loop's
state at scrape time, so ``/health`` and ``/metrics`` never disagree; histograms observed as batches go."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

BATCH_SIZES = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
SECONDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class LoopMetrics(Collector):
    """``mlprep_kafka_*``: records consumed, produced, dead-lettered by stage; batch size and duration;
    consumer lag per partition; rebalances; retries and time spent waiting; and what the handler adds
    (the bridge: model-server latency)."""

    def __init__(self, state: Callable[[], dict[str, Any]], extra: tuple[Collector, ...] = ()) -> None:
        self.state, self.extra = state, extra
        self.batch_size = Histogram(
            "mlprep_kafka_batch_size", "Messages per consumed batch.", buckets=BATCH_SIZES, registry=None
        )
        self.batch_seconds = Histogram(
            "mlprep_kafka_batch_duration_seconds",
            "Time to handle, produce and commit a batch (waits under backpressure included).",
            buckets=SECONDS,
            registry=None,
        )

    def collect(self) -> Iterator[Metric]:
        state = self.state()
        counters = {
            "consumed": ("mlprep_kafka_records_consumed", "Messages consumed."),
            "produced": ("mlprep_kafka_records_produced", "Output records produced and acknowledged."),
            "dropped": ("mlprep_kafka_records_dropped", "Messages the preprocessing returned nothing for."),
            "rebalances": ("mlprep_kafka_rebalances", "Partition assignments received (the first one included)."),
            "retries": ("mlprep_kafka_retries", "Retries of a batch under backpressure."),
            "waited_seconds": ("mlprep_kafka_backpressure_seconds", "Time spent waiting for a dependency."),
        }
        for key, (name, text) in counters.items():
            yield CounterMetricFamily(name, text, value=state[key])
        dead = CounterMetricFamily("mlprep_kafka_dead_letters", "Dead letters by stage.", labels=["stage"])
        for stage, count in sorted(state["dead_by_stage"].items()):
            dead.add_metric([stage], count)
        yield dead
        lag = GaugeMetricFamily(
            "mlprep_kafka_consumer_lag", "Messages behind the high watermark.", labels=["topic", "partition"]
        )
        for partition, behind in sorted(state["lag_by_partition"].items()):
            lag.add_metric([state["topic"], str(partition)], behind)
        yield lag
        yield GaugeMetricFamily(
            "mlprep_kafka_waiting",
            "1 while backpressure holds (a dependency is down).",
            value=int(bool(state["waiting"])),
        )
        yield GaugeMetricFamily("mlprep_kafka_ready", "1 when consuming.", value=int(bool(state["ready"])))
        yield from self.batch_size.collect()
        yield from self.batch_seconds.collect()
        for collector in self.extra:
            yield from collector.collect()
