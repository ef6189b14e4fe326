"""librdkafka configurations from the settings: connection, security, then the user's extra JSON."""

from __future__ import annotations

import re
import socket
from typing import Any

from mlprep.redaction import MASK, redact
from mlprep.settings import Settings

# librdkafka properties that hold a secret whole: passwords, SASL/OAuth secrets and configs, PEM keys.
_SECRET_KEY = re.compile(r".*(password|secret|jaas|token|oauthbearer\.config|\.pem).*|.*\.key")


def common(settings: Settings) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "security.protocol": settings.kafka_security_protocol,
    }
    optional = {
        "sasl.mechanism": settings.kafka_sasl_mechanism,
        "sasl.username": settings.kafka_sasl_username,
        "sasl.password": settings.kafka_sasl_password,
        "ssl.ca.location": settings.kafka_ssl_ca_location,
        "ssl.certificate.location": settings.kafka_ssl_certificate_location,
        "ssl.key.location": settings.kafka_ssl_key_location,
    }
    config.update({key: value for key, value in optional.items() if value})
    return config


# A group (re)join waits for every member's session: librdkafka's 45 s default makes a processor start
# (and a rebalance) take ~25 s on some brokers. 6 s is Apache Kafka's group.min.session.timeout.ms, the
# lowest every broker accepts; heartbeats run in librdkafka's own thread, so a long batch never misses one.
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 2000


def consumer(settings: Settings, group_id: str) -> dict[str, Any]:
    """Manual commits only (after the produced records are acknowledged, or inside the transaction).
    Only committed transactions of the input are read. The group timings start fast on any broker;
    KAFKA_CONSUMER_CONFIG overrides them."""
    return {
        **common(settings),
        "group.id": group_id,
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS,
        "auto.offset.reset": settings.auto_offset_reset,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        **settings.kafka_consumer_config,
    }


# An exactly-once transaction left open by a process that died blocks read_committed consumers of its
# partitions until the broker aborts it: a restart with the same transactional.id aborts it at once, a
# process that never comes back holds them this long (librdkafka's default is 60 s).
TRANSACTION_TIMEOUT_MS = 30_000


def producer(settings: Settings, transactional_id: str | None = None) -> dict[str, Any]:
    """At-least-once: acks from every in-sync replica, no idempotence (a retry may duplicate, as a
    re-read batch does). Exactly-once: a transactional (hence idempotent) producer."""
    config: dict[str, Any] = {
        **common(settings),
        "linger.ms": 5,
        "compression.type": "lz4",
        "enable.idempotence": False,
        "acks": "all",
    }
    if transactional_id:
        config.update(
            {
                "transactional.id": transactional_id,
                "enable.idempotence": True,
                "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
            }
        )
    return {**config, **settings.kafka_producer_config}


def transactional_id(settings: Settings, group_id: str, worker: int | None) -> str | None:
    """The transactional.id of an exactly-once process (None at least once): TRANSACTIONAL_ID, else
    ``<group>-<hostname>``; worker ``n`` of ``--workers`` adds ``-<n>``. The same after a restart."""
    if settings.processing_guarantee != "exactly-once":
        return None
    base = settings.transactional_id or f"{group_id}-{socket.gethostname()}"
    return base if worker is None else f"{base}-{worker}"


def safe(config: dict[str, Any]) -> dict[str, Any]:
    """A configuration fit for logs: secret properties masked, credentials of any URL (bootstrap servers,
    a schema registry) redacted."""
    return {
        key: MASK if _SECRET_KEY.fullmatch(key) else redact(value) if isinstance(value, str) else value
        for key, value in config.items()
    }
