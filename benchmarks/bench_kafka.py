"""Kafka throughput on the embedded broker, same session, same client:
(1) the stream processor on the alert example (Avro in, JSON out, cutouts skipped) against a
    passthrough (consume -> produce the raw bytes through the same loop), on ZTF-sized alerts
    (three 16 kB cutouts: the target) and on alerts with empty cutouts (reported);
(2) the bridge's predictions/s at BATCH_SIZE=100 against BATCH_SIZE=1, with `mlflow models serve`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from common import WORK, report
from confluent_kafka import Producer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples" / "alerts"))
import generate_alerts  # noqa: E402

from mlprep import services  # noqa: E402
from mlprep.kafka.bridge import build_bridge  # noqa: E402
from mlprep.kafka.broker import start_broker  # noqa: E402
from mlprep.kafka.loop import BatchLoop, Outgoing  # noqa: E402
from mlprep.kafka.processor import build_processor  # noqa: E402
from mlprep.runtime.core import Preprocessor  # noqa: E402
from mlprep.services import free_port  # noqa: E402
from mlprep.settings import Settings  # noqa: E402

FAST_GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}


class Passthrough:
    def __init__(self, target: str) -> None:
        self.target = target

    def handle(self, messages):
        return [Outgoing(self.target, m.value(), m.key(), list(m.headers() or [])) for m in messages]


def timed(loop: BatchLoop, total: int) -> float:
    """Records/s over the last 80% of ``total`` (the group join and first rebalance excluded)."""
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()

    def wait(condition) -> None:
        while not condition():
            if not thread.is_alive():
                raise SystemExit(f"{loop.name} stopped: {loop.state['error']}")
            time.sleep(0.005)

    wait(lambda: loop.state["consumed"] >= total // 5)  # steady state: the group join and first rebalance done
    first, begin = loop.state["consumed"], time.perf_counter()
    wait(lambda: loop.state["consumed"] >= total)
    elapsed = time.perf_counter() - begin
    loop.stop()
    thread.join(30)
    return (total - first) / elapsed


def produce(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for key, value in values:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(60)


def processor_vs_passthrough(bootstrap: str, count: int, stamp_bytes: int, target: float | None) -> bool:
    parsed = generate_alerts.schema()
    alerts = [
        (a["objectId"].encode(), generate_alerts.encode(a, "container", parsed))
        for a in generate_alerts.alerts(count, seed=1, stamp_bytes=stamp_bytes)
    ]
    size = sum(len(v) for _, v in alerts) // count
    source = f"bench-alerts-{uuid.uuid4().hex[:6]}"
    produce(bootstrap, source, alerts)
    del alerts
    base = Settings(
        kafka_bootstrap_servers=bootstrap, kafka_consumer_config=FAST_GROUP, batch_size=500, batch_timeout_ms=100
    )
    from mlprep.kafka import config

    passthrough = BatchLoop(
        "passthrough",
        source,
        Passthrough(f"{source}-copy"),
        config.consumer(base, f"{source}-pass"),
        config.producer(base),
        500,
        100,
    )
    raw = timed(passthrough, count)
    settings = base.model_copy(
        update={
            "input_topic": source,
            "output_topic": f"{source}-features",
            "input_format": "avro",
            "skip_cutouts": True,
            "consumer_group_id": f"{source}-proc",
        }
    )
    pre = Preprocessor.load(ROOT / "examples" / "alerts" / "alert_preprocessing.py", skip_cutouts=True)
    loop = build_processor(settings, pre)
    processed = timed(loop, count)
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in loop.state["seconds"].items())
    name = "mlprep kafka (alert preprocessing, cutouts skipped)"
    ok = report(
        f"Stream processor, {count:,} alerts of {size / 1000:.1f} kB (Avro container in, JSON out)",
        [("passthrough (consume -> produce raw bytes)", raw), (name, processed)],
        "msgs/s",
        "passthrough (consume -> produce raw bytes)",
        {name: target} if target else {},
    )
    print(f"  processor time by stage: {stages}")
    return ok


def bridge_batches(bootstrap: str) -> bool:
    import mlflow
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame({"a": np.arange(100.0), "b": np.arange(100.0) % 7})
    model_path = WORK / f"bridge-model-{uuid.uuid4().hex[:6]}"
    mlflow.sklearn.save_model(LogisticRegression().fit(frame, frame["a"] > 50), str(model_path))
    port = free_port()
    server = services.start_model_server(str(model_path), port)
    try:
        services.wait_http(f"http://127.0.0.1:{port}/ping", process=server)
        rates = {}
        for batch, count in ((1, 400), (100, 10_000)):
            source = f"bench-bridge-{batch}-{uuid.uuid4().hex[:6]}"
            produce(
                bootstrap,
                source,
                [(str(i).encode(), f'{{"a": {i % 100}, "b": {i % 7}}}'.encode()) for i in range(count)],
            )
            settings = Settings(
                kafka_bootstrap_servers=bootstrap,
                kafka_consumer_config=FAST_GROUP,
                input_topic=source,
                output_topic=f"{source}-out",
                api_url=f"http://127.0.0.1:{port}",
                batch_size=batch,
                batch_timeout_ms=100,
                consumer_group_id=source,
            )
            rates[batch] = timed(build_bridge(settings), count)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
    return report(
        "Bridge to `mlflow models serve` (scikit-learn model), predictions/s",
        [("BATCH_SIZE=1", rates[1]), ("BATCH_SIZE=100", rates[100])],
        "predictions/s",
        "BATCH_SIZE=1",
        {"BATCH_SIZE=100": 10.0},
    )


@contextlib.contextmanager
def embedded_broker() -> Iterator[str]:
    """The embedded broker on a free port, once it answers; its bootstrap address. Stopped after."""
    from confluent_kafka.admin import AdminClient

    port = free_port()
    broker = start_broker(port=port)
    bootstrap = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=1)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield bootstrap
    finally:
        os.killpg(broker.pid, signal.SIGTERM)


def main() -> bool:
    with embedded_broker() as bootstrap:
        # ZTF alerts weigh ~50 kB, mostly their three cutouts: the target is on those.
        ok = processor_vs_passthrough(bootstrap, 8_000, 16_000, 0.6)
        # With empty cutouts the Python work per message dominates: reported, no target.
        processor_vs_passthrough(bootstrap, 40_000, 0, None)
        return ok & bridge_batches(bootstrap)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
