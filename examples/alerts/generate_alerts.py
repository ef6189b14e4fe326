"""Synthetic alerts shaped like ZTF's, written to an Avro file or produced to Kafka in any framing.

python examples/alerts/generate_alerts.py --count 100 --out alerts.avro
python examples/alerts/generate_alerts.py --count 100 --topic fink-alert --framing container
(framings: container = one-record container per message, as ZTF; schemaless; key-schema, as Fink)
"""

from __future__ import annotations

import argparse
import io
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro

SCHEMA_PATH = Path(__file__).resolve().parent / "alert.avsc"


def schema() -> Any:
    return fastavro.parse_schema(json.loads(SCHEMA_PATH.read_text()))


def alerts(count: int, seed: int = 42, stamp_bytes: int = 2048) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)  # noqa: S311 - synthetic data, reproducible by seed
    for index in range(count):
        jd = 2460000.5 + index / 100 + rng.random()
        base_mag = rng.uniform(15.0, 20.5)
        history = [
            {
                "jd": jd - rng.uniform(0.5, 30),
                "fid": rng.choice((1, 2)),
                "magpsf": round(base_mag + rng.gauss(0, 0.3), 3),
                "sigmapsf": 0.05,
                "diffmaglim": 20.5,
            }
            for _ in range(rng.randint(0, 8))
        ]
        if history and rng.random() < 0.2:
            history[0] = {**history[0], "magpsf": None, "sigmapsf": None}  # an upper limit, not a detection

        def cutout(kind: str, index: int = index) -> dict[str, Any]:
            return {"fileName": f"candid{index}_{kind}.fits.gz", "stampData": rng.randbytes(stamp_bytes)}

        yield {
            "schemavsn": "3.3",
            "publisher": "mlprep synthetic",
            "objectId": f"ZTF{21 + index % 4}{''.join(rng.choices('abcdefghijklmnopqrstuvwxyz', k=7))}",
            "candid": 2_000_000_000_000_000 + index,
            "candidate": {
                "jd": jd,
                "fid": rng.choice((1, 2)),
                "pid": 1_000_000 + index,
                "magpsf": round(base_mag, 3),
                "sigmapsf": round(rng.uniform(0.02, 0.2), 3),
                "ra": rng.uniform(0, 360),
                "dec": rng.uniform(-30, 90),
                "isdiffpos": rng.choice("tf"),
                "rb": round(rng.random(), 3),
                "ndethist": len(history) + 1,
                "jdstarthist": jd - 30,
            },
            "prv_candidates": history or None,
            "cutoutScience": cutout("science"),
            "cutoutTemplate": cutout("template"),
            "cutoutDifference": cutout("difference"),
        }


def encode(alert: dict[str, Any], framing: str, parsed: Any) -> bytes:
    buffer = io.BytesIO()
    if framing == "container":
        fastavro.writer(buffer, parsed, [alert])
    else:
        fastavro.schemaless_writer(buffer, parsed, alert)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, help="write an Avro container file")
    parser.add_argument("--topic", help="produce to this Kafka topic (KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--framing", choices=("container", "schemaless", "key-schema"), default="container")
    args = parser.parse_args()
    parsed = schema()
    if args.out:
        with args.out.open("wb") as handle:
            fastavro.writer(handle, parsed, alerts(args.count, args.seed))
        print(f"wrote {args.count} alerts to {args.out}")
    if args.topic:
        import os

        from confluent_kafka import Producer

        producer = Producer({"bootstrap.servers": os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:29092")})
        key_schema = SCHEMA_PATH.read_bytes()
        for alert in alerts(args.count, args.seed):
            key = key_schema if args.framing == "key-schema" else alert["objectId"].encode()
            while True:
                try:
                    producer.produce(args.topic, encode(alert, args.framing, parsed), key)
                    break
                except BufferError:
                    producer.poll(0.1)
        producer.flush(30)
        print(f"produced {args.count} alerts to {args.topic} ({args.framing})")


if __name__ == "__main__":
    main()
