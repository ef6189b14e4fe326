"""The floor of the stream benchmarks: a hand-written confluent-kafka loop, what a team writes by hand.

Consume 500 at a time, orjson loads, identity, orjson dumps, produce, commit after delivery. It exits
after COUNT messages. Usage: floor_kafka.py BOOTSTRAP INPUT OUTPUT GROUP COUNT
"""

from __future__ import annotations

import sys

import orjson
from confluent_kafka import Consumer, Producer


def main(bootstrap: str, source: str, target: str, group: str, count: int) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
        }
    )
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "compression.type": "lz4"})
    consumer.subscribe([source])
    done = 0
    while done < count:
        messages = [m for m in consumer.consume(500, timeout=0.5) if not m.error()]
        if not messages:
            continue
        for message in messages:
            value = orjson.dumps(orjson.loads(message.value()))
            while True:
                try:
                    producer.produce(target, value, message.key())
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush()
        consumer.commit(asynchronous=False)
        done += len(messages)
    consumer.close()


if __name__ == "__main__":
    main(*sys.argv[1:5], int(sys.argv[5]))
