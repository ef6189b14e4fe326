"""The stream processor against its floor and a peer, same session, same embedded broker:

(1) exactly-once against at-least-once on the alert example (target >= 0.7x);
(2) ``--workers 2`` against 1 on CPU-heavy preprocessing (50 us a record; target >= 1.6x);
(3) 100 000 small JSON messages (200 bytes, identity, 3 partitions): a hand-written confluent-kafka loop
    (``floor_kafka.py``, the floor), ``mlprep kafka`` and Quix Streams (``peer_quix.py``, its own venv),
    each a process of its own, in alternating rounds. The rate is timed from the first output to the last
    by a tail consumer (the broker's share is the same for all three), and CPU per message is the
    process's own (user + system, start-up included). Targets: >= 0.8x the floor, >= 2x Quix Streams.

ROUNDS (default 3) sets the rounds of (3). Arguments name the parts to run: guarantees, workers, small.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import orjson
from bench_kafka import FAST_GROUP, ROOT, embedded_broker, generate_alerts, produce, timed
from common import WORK, report
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from mlprep.kafka.processor import build_processor
from mlprep.runtime.core import Preprocessor
from mlprep.services import free_port
from mlprep.settings import Settings

PYTHON = sys.executable
QUIX_PYTHON = str(ROOT / ".venv-quix" / "bin" / "python")
HERE = Path(__file__).resolve().parent
TICKS = os.sysconf("SC_CLK_TCK")


def create(bootstrap: str, name: str, partitions: int) -> str:
    admin = AdminClient({"bootstrap.servers": bootstrap})  # alive until the topic is there
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(10)
    return name


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process and its waited-for children (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / TICKS


class TailTimer:
    """Counts a topic's messages as they arrive; the time of the first and of the ``count``-th."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, count: int) -> None:
        self.count, self.seen = count, 0
        self.first: float | None = None
        self.last: float | None = None
        self.consumer = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "fetch.wait.max.ms": 10}
        )
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.seen < self.count:
            batch = [m for m in self.consumer.consume(5000, timeout=0.2) if not m.error()]
            if batch:
                self.first = self.first or time.perf_counter()
                self.seen += len(batch)
        self.last = time.perf_counter()
        self.consumer.close()

    def wait(self, process: subprocess.Popen, timeout: float) -> float:
        """Messages/s from the first output to the ``count``-th."""
        self.thread.join(timeout)
        if self.thread.is_alive() or self.first is None or self.last is None:
            raise SystemExit(f"only {self.seen} of {self.count} outputs (process status {process.poll()})")
        return (self.count - 1) / (self.last - self.first)


def mlprep_kafka(bootstrap: str, source: str, target: str, group: str, preprocessing: Path, **env: str):
    port = free_port()
    variables = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "INPUT_TOPIC": source,
        "OUTPUT_TOPIC": target,
        "CONSUMER_GROUP_ID": group,
        "API_HOST": "127.0.0.1",
        "API_PORT": str(port),
        **env,
    }
    process = subprocess.Popen(
        [PYTHON, "-m", "mlprep", "kafka", "-p", str(preprocessing)],
        env=variables,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    process.ready_url = f"http://127.0.0.1:{port}/ready"  # type: ignore[attr-defined]
    return process


def wait_ready(process: subprocess.Popen, timeout: float = 120) -> None:
    """Until every worker of the processor has its partitions (no rebalance left to time)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the processor exited with status {process.returncode}")
        try:
            if httpx.get(process.ready_url, timeout=1).status_code == 200:  # type: ignore[attr-defined]
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("the processor was not ready in time")


def measured(
    start: Callable[[str, str], subprocess.Popen], bootstrap: str, source: str, count: int
) -> tuple[float, float]:
    """(messages/s first-to-last output, CPU seconds per message) of the process ``start(target, group)``."""
    target = create(bootstrap, f"{source}-out-{uuid.uuid4().hex[:6]}", 3)
    tail = TailTimer(bootstrap, target, 3, count)
    process = start(target, f"{source}-{uuid.uuid4().hex[:6]}")
    try:
        rate = tail.wait(process, timeout=300)
        cpu = cpu_seconds(process.pid)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return rate, cpu / count


def small_messages(bootstrap: str, rounds: int) -> bool:
    count = 100_000
    source = create(bootstrap, f"bench-small-{uuid.uuid4().hex[:6]}", 3)
    pad = "x" * 150
    produce(
        bootstrap, source, [(str(i).encode(), orjson.dumps({"id": i, "v": i * 0.5, "pad": pad})) for i in range(count)]
    )
    identity = WORK / "identity.py"
    identity.write_text("def pre_processing(record):\n    return record\n")
    contenders: dict[str, Callable[[str, str], subprocess.Popen]] = {
        "hand-written confluent-kafka loop (floor)": lambda target, group: subprocess.Popen(
            [PYTHON, str(HERE / "floor_kafka.py"), bootstrap, source, target, group, str(count)]
        ),
        "mlprep kafka": lambda target, group: mlprep_kafka(bootstrap, source, target, group, identity),
    }
    if Path(QUIX_PYTHON).exists():
        contenders["Quix Streams"] = lambda target, group: subprocess.Popen(
            [QUIX_PYTHON, str(HERE / "peer_quix.py"), bootstrap, source, target, group],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    else:
        print(f"  Quix Streams: no {QUIX_PYTHON} (scripts/bench.sh makes it: bash scripts/venv.sh quix .venv-quix)")
    rates: dict[str, list[float]] = {name: [] for name in contenders}
    cpus: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, start in contenders.items():
            rate, cpu = measured(start, bootstrap, source, count)
            rates[name].append(rate)
            cpus[name].append(cpu)
    floor = "hand-written confluent-kafka loop (floor)"
    rows = [(name, statistics.median(values)) for name, values in rates.items()]
    targets = {"mlprep kafka": 0.8}
    ok = report(
        f"{count:,} JSON messages of ~200 bytes, identity, 3 partitions (median of {rounds} alternating rounds,"
        " first-to-last output)",
        rows,
        "msgs/s",
        floor,
        targets,
    )
    for name in contenders:
        low, high = min(rates[name]), max(rates[name])
        print(f"  {name:<42} range {low:,.0f}-{high:,.0f} msgs/s, CPU {statistics.median(cpus[name]) * 1e6:.1f} us/msg")
    if "Quix Streams" in rates:
        ratio = statistics.median(rates["mlprep kafka"]) / statistics.median(rates["Quix Streams"])
        met = ratio >= 2.0
        print(f"  mlprep kafka / Quix Streams: {ratio:.2f}x   target >= 2.0x: {'met' if met else 'MISSED'}")
        ok &= met
    print(
        "  Regime: 100 000 messages already in the topic, drained at full speed; the process's CPU includes"
        " its start-up. At 500 000 messages the three converge on the embedded broker's own limit."
    )
    return ok


def guarantees(bootstrap: str) -> bool:
    """The alert example with each guarantee, same alerts, same loop."""
    count = 20_000
    parsed = generate_alerts.schema()
    alerts = [
        (a["objectId"].encode(), generate_alerts.encode(a, "container", parsed))
        for a in generate_alerts.alerts(count, seed=2, stamp_bytes=0)
    ]
    source = f"bench-eos-{uuid.uuid4().hex[:6]}"
    produce(bootstrap, source, alerts)
    pre = Preprocessor.load(ROOT / "examples" / "alerts" / "alert_preprocessing.py", skip_cutouts=True)
    rates: dict[str, list[float]] = {"at-least-once": [], "exactly-once": []}
    for round_, guarantee in enumerate(["at-least-once", "exactly-once"] * 3):
        settings = Settings(
            kafka_bootstrap_servers=bootstrap,
            kafka_consumer_config=FAST_GROUP,
            batch_size=500,
            batch_timeout_ms=100,
            input_topic=source,
            output_topic=f"{source}-{guarantee}-{round_}",
            input_format="avro",
            skip_cutouts=True,
            consumer_group_id=f"{source}-{guarantee}-{round_}",
            processing_guarantee=guarantee,
        )
        rates[guarantee].append(timed(build_processor(settings, pre), count))
    return report(
        f"Delivery guarantees, {count:,} alerts (alert example, BATCH_SIZE=500, median of 3 alternating rounds)",
        [(name, statistics.median(values)) for name, values in rates.items()],
        "msgs/s",
        "at-least-once",
        {"exactly-once": 0.7},
    )


def workers(bootstrap: str) -> bool:
    """--workers 2 against 1 on preprocessing that spends 50 us of CPU a record, each measured once its
    group is settled (every worker has its partitions): records are produced only then."""
    count = 40_000
    heavy = WORK / "heavy.py"
    heavy.write_text(
        "import time\n\n"
        "def pre_processing(record):\n"
        "    end = time.perf_counter() + 50e-6\n"
        "    while time.perf_counter() < end:\n"
        "        pass\n"
        "    return record\n"
    )
    rates: dict[int, list[float]] = {1: [], 2: []}
    for n in (1, 2, 1, 2):
        source = create(bootstrap, f"bench-workers-{uuid.uuid4().hex[:6]}", 4)
        target = create(bootstrap, f"{source}-out", 3)
        process = mlprep_kafka(bootstrap, source, target, source, heavy, WORKERS=str(n))
        try:
            wait_ready(process)
            tail = TailTimer(bootstrap, target, 3, count)
            produce(bootstrap, source, [(str(i).encode(), orjson.dumps({"id": i})) for i in range(count)])
            rates[n].append(tail.wait(process, timeout=300))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
    return report(
        f"--workers on CPU-heavy preprocessing (50 us a record), {count:,} records, 4 partitions,"
        f" {os.cpu_count()} cores (median of 2 alternating rounds)",
        [("--workers 1", statistics.median(rates[1])), ("--workers 2", statistics.median(rates[2]))],
        "records/s",
        "--workers 1",
        {"--workers 2": 1.6},
    )


def main() -> bool:
    with embedded_broker() as bootstrap:
        return run_parts(bootstrap)


def run_parts(bootstrap: str) -> bool:
    parts = {
        "guarantees": lambda: guarantees(bootstrap),
        "workers": lambda: workers(bootstrap),
        "small": lambda: small_messages(bootstrap, int(os.environ.get("ROUNDS", "3"))),
    }
    ok = True
    for name in sys.argv[1:] or parts:  # a part's name runs that part only
        ok &= parts[name]()
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
