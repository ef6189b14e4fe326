"""Prometheus metrics without a dependency: counters and a latency histogram, text exposition.

Updated from the event loop only, so plain integer updates are safe. With ``API_WORKERS`` > 1 each
worker process exposes its own figures.
"""

from __future__ import annotations

import bisect
from collections import defaultdict

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.records: dict[str, int] = defaultdict(int)
        self.errors: dict[str, int] = defaultdict(int)
        self.buckets: dict[str, list[int]] = defaultdict(lambda: [0] * len(BUCKETS))
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.latency_count: dict[str, int] = defaultdict(int)

    def observe(self, endpoint: str, status: int, seconds: float, records: int = 0, errors: int = 0) -> None:
        self.requests[(endpoint, status)] += 1
        self.records[endpoint] += records
        self.errors[endpoint] += errors
        index = bisect.bisect_left(BUCKETS, seconds)
        if index < len(BUCKETS):
            self.buckets[endpoint][index] += 1
        self.latency_sum[endpoint] += seconds
        self.latency_count[endpoint] += 1

    def render(self) -> str:
        lines = [
            "# HELP mlprep_requests_total Preprocessing requests by endpoint and HTTP status.",
            "# TYPE mlprep_requests_total counter",
        ]
        lines += [
            f'mlprep_requests_total{{endpoint="{e}",status="{s}"}} {n}' for (e, s), n in sorted(self.requests.items())
        ]
        lines += [
            "# HELP mlprep_records_total Records received for preprocessing.",
            "# TYPE mlprep_records_total counter",
        ]
        lines += [f'mlprep_records_total{{endpoint="{e}"}} {n}' for e, n in sorted(self.records.items())]
        lines += [
            "# HELP mlprep_record_errors_total Records whose preprocessing failed.",
            "# TYPE mlprep_record_errors_total counter",
        ]
        lines += [f'mlprep_record_errors_total{{endpoint="{e}"}} {n}' for e, n in sorted(self.errors.items())]
        lines += [
            "# HELP mlprep_request_duration_seconds Request latency.",
            "# TYPE mlprep_request_duration_seconds histogram",
        ]
        for endpoint in sorted(self.latency_count):
            cumulative = 0
            for bound, count in zip(BUCKETS, self.buckets[endpoint], strict=True):
                cumulative += count
                lines.append(
                    f'mlprep_request_duration_seconds_bucket{{endpoint="{endpoint}",le="{bound}"}} {cumulative}'
                )
            total = self.latency_count[endpoint]
            lines.append(f'mlprep_request_duration_seconds_bucket{{endpoint="{endpoint}",le="+Inf"}} {total}')
            lines.append(f'mlprep_request_duration_seconds_sum{{endpoint="{endpoint}"}} {self.latency_sum[endpoint]}')
            lines.append(f'mlprep_request_duration_seconds_count{{endpoint="{endpoint}"}} {total}')
        return "\n".join(lines) + "\n"
