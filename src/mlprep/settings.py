"""One typed settings object, read from environment variables named as the users know them."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import orjson
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from mlprep.errors import MlprepError
from mlprep.settings_defaults import PREFIX

# A list setting takes what users write: `a,b,c` as well as the JSON list `["a", "b", "c"]`.
CommaList = Annotated[list[str], NoDecode]


class SettingsProblem(MlprepError):
    """An environment variable holds a value its setting cannot take; the message names both."""


class Settings(BaseSettings):
    """Environment variables of the runner, its front ends and the build side.

    Each setting is read from its plain name (``API_PORT``) or the same name with the ``MLPREP_`` prefix
    (``MLPREP_API_PORT``), the prefixed one first; names are case-insensitive.
    """

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        prefixed = EnvSettingsSource(settings_cls, env_prefix=PREFIX, case_sensitive=False)
        return init_settings, prefixed, env_settings, dotenv_settings, file_secret_settings

    preprocessing_dir: str = Field("preprocessing", description="Folder or .py file with pre_processing")
    avro_schema_path: str | None = Field(None, description="Schema for schemaless Avro input")
    skip_cutouts: bool = Field(False, description="Drop cutoutScience/Template/Difference before pre_processing")

    api_host: str = "0.0.0.0"  # noqa: S104 - a container must listen on every interface
    api_port: int = Field(8000, ge=1, le=65535)
    api_workers: int = Field(1, ge=1)
    api_access_log: bool = False
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1)

    # Limits: what one record, one request and one batch may cost before it is refused with a clear error.
    max_record_bytes: int = Field(32 * 1024 * 1024, ge=1, description="Largest record (decoded or encoded)")
    max_batch_records: int = Field(100_000, ge=1, description="Most records in one /preprocess/batch request")
    request_timeout_s: float = Field(30.0, gt=0, description="Longest a request may wait for pre_processing")
    api_threads: int = Field(40, ge=1, description="Threads running pre_processing in one API process")
    api_inline: Literal["auto", "always", "never"] = Field(
        "auto", description="Run pre_processing on the event loop: once measured fast (auto), always, or never"
    )

    # Spark (`mlprep run --engine spark`): the master when not given by --master or spark-submit.
    spark_master: str | None = Field(None, description="Spark master URL of mlprep run --engine spark")

    # Image builds: the default --base-image (e.g. a local `mlprep base-image` for air-gapped hosts).
    mlprep_base_image: str | None = None
    # Publishing: images are named REGISTRY/name:tag and pushed with the Docker CLI's own credentials.
    registry: str | None = Field(None, description="Registry host[:port][/path] images are pushed to")
    push_images: bool = Field(False, description="Push every image the build API builds (webhooks too)")
    promote_aliases: CommaList = Field(
        default_factory=lambda: ["champion"], description="Aliases whose move re-tags and pushes the images"
    )

    # Build API (build_scripts/api.py).
    build_api_host: str = "127.0.0.1"
    build_api_port: int = Field(8000, ge=1, le=65535)
    build_api_database_url: str = "sqlite:///build_api.db"
    build_api_token: str | None = Field(None, repr=False)
    max_concurrent_builds: int = Field(2, ge=1)
    mlflow_webhook_secret: str | None = Field(None, repr=False)
    webhook_tolerance_seconds: int = Field(300, ge=1)

    # Kafka: stream processor (`mlprep kafka`), stdout->Kafka mode, bridge (`mlprep bridge`).
    kafka_enabled: bool = False
    kafka_bootstrap_servers: str = "localhost:29092"
    input_topic: str | None = None
    output_topic: str | None = None
    input_format: Literal["avro", "json"] = "json"
    output_format: Literal["json", "avro"] = "json"
    consumer_group_id: str | None = None  # default per front end: mlprep-preprocessing, mlprep-bridge
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    output_avro_schema_path: str | None = None
    output_avro_framing: Literal["schemaless", "container"] = "schemaless"
    input_avro_framing: Literal["auto", "container", "schemaless", "key-schema", "confluent"] = "auto"
    schema_registry_url: str | None = None
    dead_letter_topic: str | None = None
    kafka_topic_suffix: str = "cleaned"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = Field(None, repr=False)
    kafka_ssl_ca_location: str | None = None
    kafka_ssl_certificate_location: str | None = None
    kafka_ssl_key_location: str | None = None
    kafka_consumer_config: dict[str, Any] = Field(default_factory=dict)
    kafka_producer_config: dict[str, Any] = Field(default_factory=dict)
    batch_size: int = Field(500, ge=1)
    # Delivery: at-least-once commits the consumed offsets after the outputs are acknowledged (a crash
    # re-emits the batch); exactly-once writes outputs and offsets in one Kafka transaction.
    processing_guarantee: Literal["at-least-once", "exactly-once"] = "at-least-once"
    # The transactional.id of an exactly-once process (default <group>-<hostname>, "-<n>" per worker):
    # stable across restarts, so that a restarted process fences its predecessor's open transaction.
    transactional_id: str | None = Field(None, pattern=r"[A-Za-z0-9._-]{1,200}")
    workers: int = Field(1, ge=1, le=64, description="Consumer processes of mlprep kafka / mlprep bridge")
    batch_timeout_ms: int = Field(500, ge=1)
    # Backpressure: a model server or broker that is down pauses the partitions and retries the batch with
    # capped exponential backoff (from BRIDGE_RETRY_DELAY_MS up to RETRY_MAX_DELAY_MS); after
    # RETRY_TIMEOUT_S (none by default: wait as long as it takes) the batch is given up.
    retry_max_delay_ms: int = Field(10_000, ge=1)
    retry_timeout_s: float | None = Field(None, gt=0)
    # Bridge to a model server.
    api_url: str = "http://localhost:8080"
    api_endpoint: str = "/invocations"
    bridge_payload_format: Literal["dataframe_records", "instances", "inputs"] = "dataframe_records"
    passthrough_fields: CommaList = Field(default_factory=list)
    bridge_max_retries: int = Field(5, ge=0)
    bridge_retry_delay_ms: int = Field(200, ge=1)
    bridge_port: int = Field(8081, ge=1, le=65535)  # its /health, /ready and /metrics (host: API_HOST)

    # The MLflow model served in the same process (mlprep serve --model, mlprep kafka --model): a registry
    # URI (models:/NAME@ALIAS, models:/NAME/VERSION), runs:/RUN/PATH or a local folder. With an alias and
    # MODEL_RELOAD_S, the alias is checked every MODEL_RELOAD_S seconds and a new version swapped in.
    model_uri: str | None = None
    model_reload_s: float | None = Field(None, gt=0)

    # Provenance, baked into the image at build time (or set by hand).
    mlflow_run_id: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    preprocessing_type: str | None = None

    @field_validator("passthrough_fields", "promote_aliases", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip()
        if text.startswith("["):
            try:
                return orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f'not a JSON list ({exc}); write a,b,c or ["a", "b"]') from exc
        return [item.strip() for item in text.split(",") if item.strip()]


def load_settings(**overrides: Any) -> Settings:
    """The settings of this process, or one line per bad variable naming it and what it expects."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{_variable(e['loc'])}: {e['msg']} (got {_shown(e.get('input'))})" for e in exc.errors())
        raise SettingsProblem(f"invalid environment variable: {problems}") from exc
    except SettingsError as exc:  # a value that should be JSON (a dict setting) and is not
        field = re.search(r'field "(\w+)"', str(exc))
        name = field.group(1).upper() if field else "?"
        raise SettingsProblem(
            f"invalid environment variable: {name}: not valid JSON; write it as a JSON object"
        ) from exc


def _variable(location: tuple[Any, ...]) -> str:
    return ".".join(map(str, location)).upper() if location else "?"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."
