"""Quix Streams doing what the floor does (JSON in, identity, JSON out, at-least-once); run in its own venv
(.venv-quix: locks/quix.txt). Usage: peer_quix.py BOOTSTRAP INPUT OUTPUT GROUP"""

from __future__ import annotations

import sys

from quixstreams import Application


def main(bootstrap: str, source: str, target: str, group: str) -> None:
    app = Application(broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest", loglevel="WARNING")
    output = app.topic(target, value_serializer="json")
    app.dataframe(app.topic(source, value_deserializer="json")).to_topic(output)
    app.run()


if __name__ == "__main__":
    main(*sys.argv[1:5])
