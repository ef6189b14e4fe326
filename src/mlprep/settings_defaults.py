"""Every setting's default value, readable without importing pydantic.

Importing pydantic-settings takes longer than a short batch run (0.1-0.4 s). When the environment
sets no setting (no variable named like one, with or without the ``MLPREP_`` prefix), the settings
are exactly these defaults: the CLI then starts with ``DefaultSettings`` and builds the validated
``Settings`` only for the commands that need more than batch mode. tests/test_settings.py checks
this table against ``Settings``: a new setting goes in both.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

PREFIX = "MLPREP_"

DEFAULTS: MappingProxyType[str, Any] = MappingProxyType(
    {
        "preprocessing_dir": "preprocessing",
        "avro_schema_path": None,
        "skip_cutouts": False,
        "api_host": "0.0.0.0",  # noqa: S104 - a container must listen on every interface
        "api_port": 8000,
        "api_workers": 1,
        "api_inline": "auto",
        "api_access_log": False,
        "max_body_bytes": 10 * 1024 * 1024,
        "max_record_bytes": 32 * 1024 * 1024,
        "max_batch_records": 100_000,
        "request_timeout_s": 30.0,
        "api_threads": 40,
        "spark_master": None,
        "mlprep_base_image": None,
        "registry": None,
        "push_images": False,
        "promote_aliases": ["champion"],
        "build_api_host": "127.0.0.1",
        "build_api_port": 8000,
        "build_api_database_url": "sqlite:///build_api.db",
        "build_api_token": None,
        "max_concurrent_builds": 2,
        "mlflow_webhook_secret": None,
        "webhook_tolerance_seconds": 300,
        "kafka_enabled": False,
        "kafka_bootstrap_servers": "localhost:29092",
        "input_topic": None,
        "output_topic": None,
        "input_format": "json",
        "output_format": "json",
        "consumer_group_id": None,
        "auto_offset_reset": "earliest",
        "output_avro_schema_path": None,
        "output_avro_framing": "schemaless",
        "input_avro_framing": "auto",
        "schema_registry_url": None,
        "dead_letter_topic": None,
        "kafka_topic_suffix": "cleaned",
        "kafka_security_protocol": "PLAINTEXT",
        "kafka_sasl_mechanism": None,
        "kafka_sasl_username": None,
        "kafka_sasl_password": None,
        "kafka_ssl_ca_location": None,
        "kafka_ssl_certificate_location": None,
        "kafka_ssl_key_location": None,
        "kafka_consumer_config": {},
        "kafka_producer_config": {},
        "batch_size": 500,
        "processing_guarantee": "at-least-once",
        "transactional_id": None,
        "workers": 1,
        "batch_timeout_ms": 500,
        "retry_max_delay_ms": 10_000,
        "retry_timeout_s": None,
        "api_url": "http://localhost:8080",
        "api_endpoint": "/invocations",
        "bridge_payload_format": "dataframe_records",
        "passthrough_fields": [],
        "bridge_max_retries": 5,
        "bridge_retry_delay_ms": 200,
        "bridge_port": 8081,
        "model_uri": None,
        "model_reload_s": None,
        "mlflow_run_id": None,
        "model_name": None,
        "model_version": None,
        "preprocessing_type": None,
    }
)


class DefaultSettings:
    """The attributes of a ``Settings`` built from an environment that sets nothing."""

    def __init__(self) -> None:
        self.__dict__.update(copy.deepcopy(dict(DEFAULTS)))


def environment_sets_any(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether a variable of ``environ`` names a setting (case-insensitive, with or without the prefix)."""
    prefix = PREFIX.lower()
    for name in environ:
        name = name.lower()
        if name in DEFAULTS or (name.startswith(prefix) and name[len(prefix) :] in DEFAULTS):
            return True
    return False
