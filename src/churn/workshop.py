"""What the workshop's orchestrator files share: where the data and MLflow are, a flaky source, alerts.

The Prefect, Dagster and Airflow files of ``pipelines/workshop`` wrap the steps of this package in
their own tasks and assets; this module holds the few helpers that are about the workshop itself, so
the three orchestrators stay comparable line for line.
"""

from __future__ import annotations

import json
import random
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from churn import data
from churn.feed import Feed

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA = ROOT / "data" / "customer_data.csv"
ENV_FILE = ROOT / ".env"
DEFAULT_FEED = ROOT / "data" / "feed"
STACK_MLFLOW = "http://localhost:{port}"
# Without the stack, the one local store of scripts and notebooks alike (never one per current folder).
LOCAL_STORE = ROOT / "mlflow.db"


class WorkshopSettings(BaseSettings):
    """The workshop's environment variables, typed: a wrong value is named when a script starts."""

    # The same .env as docker compose (at the repository's root, whatever the current folder): the port
    # the stack publishes MLflow on is the port scripts and notebooks talk to. The environment wins.
    model_config = SettingsConfigDict(
        env_prefix="", case_sensitive=False, extra="ignore", env_file=ENV_FILE, env_file_encoding="utf-8"
    )

    mlflow_tracking_uri: str | None = None
    mlflow_port: int = Field(5000, ge=1, le=65535, description="the Docker stack's MLflow port on this machine")
    prefect_port: int = Field(4200, ge=1, le=65535, description="the Docker stack's Prefect port on this machine")
    dagster_port: int = Field(3000, ge=1, le=65535, description="the Docker stack's Dagster port on this machine")
    churn_data_path: Path | None = None
    churn_feed_dir: Path = Field(DEFAULT_FEED, description="where the monthly customer files are published")
    churn_feed_months: int = Field(data.MONTHS, ge=1, description="how many months the feed publishes at most")
    # Webhook URLs carry their token: never printed.
    discord_webhook_url: SecretStr | None = None
    slack_webhook_url: SecretStr | None = None
    workshop_expensive_seconds: float = Field(2.0, ge=0, description="simulated cost of the feature step")
    workshop_failure_rate: float = Field(0.3, ge=0, le=1, description="how often the exercises' source fails")


def settings() -> WorkshopSettings:
    """Read now (not at import), so a script sees the environment it runs in."""
    return WorkshopSettings()


def data_path() -> Path:
    """``CHURN_DATA_PATH``, else ``data/customer_data.csv`` (the seeded table is written if that one is missing)."""
    given = settings().churn_data_path
    if given:
        if not given.is_file():
            raise FileNotFoundError(
                f"CHURN_DATA_PATH={given}: no such file (python generate_sample_data.py --out {given} writes one)"
            )
        return given
    if not DEFAULT_DATA.exists():
        DEFAULT_DATA.parent.mkdir(parents=True, exist_ok=True)
        data.generate().to_csv(DEFAULT_DATA, index=False)
    return DEFAULT_DATA


def customer_feed() -> Feed:
    """The monthly customer feed of ``CHURN_FEED_DIR`` (``data/feed`` by default)."""
    config = settings()
    return Feed(config.churn_feed_dir, config.churn_feed_months)


def _answers(url: str) -> bool:
    """Does an MLflow answer 200 on ``url``/health? Stricter than ``mlprep.build.fetch.check_reachable`` on
    purpose: any answer is not enough here (macOS's AirPlay, for one, answers 403 on port 5000)."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as response:  # noqa: S310 (fixed http URL)
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set; else the stack's MLflow (MLFLOW_PORT, from the environment or .env).

    Scripts and notebooks call this, so they share one store: the stack's. If it does not answer, runs go
    to ``mlflow.db`` at the repository's root, and a warning on stderr says so (``python -m churn doctor``
    tells why).
    """
    config = settings()
    if config.mlflow_tracking_uri:
        return config.mlflow_tracking_uri
    stack = STACK_MLFLOW.format(port=config.mlflow_port)
    if _answers(stack):
        return stack
    print(
        f"MLflow ne répond pas sur {stack} (MLFLOW_PORT={config.mlflow_port}) : les runs vont dans {LOCAL_STORE}, "
        "que l'UI de la stack ne montre pas. Démarrez la stack (docker compose up -d) ; "
        "diagnostic : python -m churn doctor",
        file=sys.stderr,
    )
    return f"sqlite:///{LOCAL_STORE}"


def configure_mlflow(experiment: str) -> str:
    """Point MLflow at ``tracking_uri()`` and the given experiment; returns the URI used."""
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(experiment)
    return uri


class FlakySource:
    """A customer API that fails now and then, as real ones do (timeouts, rate limits).

    ``failures`` first calls fail, then calls succeed; with ``failure_rate`` set instead, each call
    fails at random. The counter lives in the instance, so a retry sees the next call. ``path`` is a
    CSV file, or a feed folder (every month published so far).
    """

    def __init__(self, path: Path, failures: int = 2, failure_rate: float = 0.0) -> None:
        self.path, self.failures, self.failure_rate, self.calls = path, failures, failure_rate, 0

    def fetch(self) -> pd.DataFrame:
        self.calls += 1
        if self.calls <= self.failures or random.random() < self.failure_rate:  # noqa: S311 (a simulation)
            raise ConnectionError(f"customer API unavailable (call {self.calls}): 503 Service Unavailable")
        return Feed(self.path).load() if self.path.is_dir() else pd.read_csv(self.path)


def _post(url: str, payload: dict) -> None:
    request = urllib.request.Request(  # noqa: S310 (the URL is the user's own webhook)
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        response.read()


def notify(message: str) -> list[str]:
    """Post ``message`` to DISCORD_WEBHOOK_URL and SLACK_WEBHOOK_URL (each if set); returns who got it.

    A notification that fails is reported, never raised: an alert must not fail the pipeline it reports on.
    """
    config, sent = settings(), []
    for channel, secret, payload in (
        ("discord", config.discord_webhook_url, {"content": message}),
        ("slack", config.slack_webhook_url, {"text": message}),
    ):
        if secret is None or not secret.get_secret_value():
            continue
        url = secret.get_secret_value()
        try:
            _post(url, payload)
            sent.append(channel)
        except (OSError, urllib.error.URLError) as error:
            print(f"notification to {channel} failed: {error}")
    return sent


def report(results: list[tuple[str, bool, str]]) -> int:
    """Print an exercise check (done, or what is missing); returns how many are still to do."""
    for title, done, hint in results:
        print(f"{'✅' if done else '❌'} {title}" + ("" if done else f"\n     -> {hint}"))
    missing = sum(not done for _, done, _ in results)
    print(f"\n{len(results) - missing}/{len(results)} exercices terminés" + (" — bravo !" if not missing else ""))
    return missing
