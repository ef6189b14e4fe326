"""``mlprep kafka``, ``bridge``, ``kafka-broker``, ``topic-dump``: the Kafka front ends and their tools."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from mlprep.cli.options import log_to_stderr, positive, preprocessing_option

if TYPE_CHECKING:
    from mlprep.settings import Settings


def register(commands: argparse._SubParsersAction, settings: Settings) -> None:
    kafka = commands.add_parser(
        "kafka",
        help="stream processor: INPUT_TOPIC -> pre_processing -> OUTPUT_TOPIC, with the REST API",
        description="Consume INPUT_TOPIC (INPUT_FORMAT avro|json), apply pre_processing, produce to OUTPUT_TOPIC "
        "(OUTPUT_FORMAT json|avro); bad messages go to DEAD_LETTER_TOPIC (default <INPUT_TOPIC>-dlq). The REST API "
        "runs in the same process; /health reports the consumer's state and lag. With --model, the MLflow model "
        "predicts on the preprocessed records and its predictions go to OUTPUT_TOPIC. Settings come from the "
        "environment (see README).",
    )
    preprocessing_option(kafka, settings)
    kafka.add_argument("--host", default=settings.api_host, help="REST API host (env API_HOST)")
    kafka.add_argument("--port", type=int, default=settings.api_port, help="REST API port (env API_PORT)")
    workers_option(kafka, settings)
    kafka.add_argument(
        "--model",
        default=settings.model_uri,
        metavar="MODEL_URI",
        help="also run this MLflow model (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN/PATH, a folder) on the"
        " preprocessed records and write its predictions to OUTPUT_TOPIC (env MODEL_URI; MODEL_RELOAD_S: seconds"
        " between checks of where an alias points)",
    )
    kafka.set_defaults(handler=_kafka)

    bridge = commands.add_parser(
        "bridge",
        help="Kafka bridge: INPUT_TOPIC -> a model server's /invocations (in batches) -> OUTPUT_TOPIC",
        description="Settings from the environment: KAFKA_BOOTSTRAP_SERVERS, INPUT_TOPIC, OUTPUT_TOPIC, API_URL, "
        "API_ENDPOINT, INPUT_FORMAT, OUTPUT_FORMAT, CONSUMER_GROUP_ID, AUTO_OFFSET_RESET, BATCH_SIZE, "
        "BATCH_TIMEOUT_MS, BRIDGE_PAYLOAD_FORMAT, PASSTHROUGH_FIELDS, BRIDGE_MAX_RETRIES, BRIDGE_RETRY_DELAY_MS, "
        "RETRY_MAX_DELAY_MS, RETRY_TIMEOUT_S; /health, /ready and /metrics on API_HOST:BRIDGE_PORT (8081).",
    )
    workers_option(bridge, settings)
    bridge.set_defaults(handler=_bridge)

    broker = commands.add_parser("kafka-broker", help="the embedded Kafka broker (tansu, memory storage)")
    broker.add_argument("--host", default="127.0.0.1")
    broker.add_argument("--port", type=int, default=29092)
    broker.set_defaults(handler=_kafka_broker)

    dump = commands.add_parser("topic-dump", help="print a topic's messages, oldest first (values, one a line)")
    dump.add_argument("topic", metavar="TOPIC")
    dump.add_argument("--keys", action="store_true", help="print KEY<TAB>VALUE")
    dump.add_argument("--wait", type=float, default=10.0, help="seconds to wait for the topic (default 10)")
    dump.set_defaults(handler=_topic_dump)


def workers_option(parser: argparse.ArgumentParser, settings: Settings) -> None:
    parser.add_argument(
        "--workers",
        type=positive,
        default=settings.workers,
        metavar="N",
        help="consumer processes in the consumer group, one core each (env WORKERS, default 1); keep the input's"
        " partitions >= all consumers of the group",
    )


def _kafka(args: argparse.Namespace, settings: Settings) -> int:
    from mlprep.kafka.processor import serve_with_processor
    from mlprep.runtime.core import Preprocessor

    log_to_stderr()
    settings.model_uri = args.model
    pre = Preprocessor.load(args.preprocessing, skip_cutouts=settings.skip_cutouts)
    return serve_with_processor(settings, pre, args.host, args.port, args.workers, args.preprocessing)


def _bridge(args: argparse.Namespace, settings: Settings) -> int:
    from mlprep.kafka.bridge import run_bridge

    log_to_stderr()
    return run_bridge(settings, args.workers)


def _kafka_broker(args: argparse.Namespace, settings: Settings) -> int:
    from mlprep.kafka.broker import exec_broker

    print(f"mlprep: Kafka broker (tansu, memory storage) on {args.host}:{args.port}", file=sys.stderr, flush=True)
    exec_broker(args.host, args.port)
    return 0


def _topic_dump(args: argparse.Namespace, settings: Settings) -> int:
    from mlprep.kafka.dump import dump_topic

    for key, value in dump_topic(settings, args.topic, args.wait):
        line = value.decode("utf-8", "backslashreplace") if value is not None else ""
        if args.keys:
            line = f"{key.decode('utf-8', 'backslashreplace') if key else ''}\t{line}"
        print(line)
    return 0
