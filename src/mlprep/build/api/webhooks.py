"""MLflow Model Registry webhooks: signature check (as MLflow signs them) and what to build.

MLflow signs ``{delivery_id}.{timestamp}.{payload}`` with HMAC-SHA256 and sends
``X-MLflow-Signature: v1,<base64>``, ``X-MLflow-Timestamp`` and ``X-MLflow-Delivery-Id``
(mlflow/webhooks/delivery.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from mlprep.build.images import MODEL_SOURCE
from mlprep.build.naming import ValidationError, check_run_id, image_name

SIGNATURE = "x-mlflow-signature"
TIMESTAMP = "x-mlflow-timestamp"
DELIVERY_ID = "x-mlflow-delivery-id"
TIMESTAMP_FORMAT = re.compile(r"[0-9]{1,12}")  # ASCII only: str.isdigit() takes '²' and int() then fails
DELIVERY_ID_FORMAT = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


class WebhookRejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def sign(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The ``X-MLflow-Signature`` value MLflow sends for ``body``."""
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(secret: str, headers: Mapping[str, str], body: bytes, tolerance: int, now: float | None = None) -> str:
    """The delivery id of a genuine, fresh delivery; WebhookRejected(401) otherwise."""
    signature, timestamp, delivery_id = headers.get(SIGNATURE), headers.get(TIMESTAMP), headers.get(DELIVERY_ID)
    if not signature or not timestamp or not delivery_id:
        raise WebhookRejected(
            401, "unsigned delivery: X-MLflow-Signature, X-MLflow-Timestamp and X-MLflow-Delivery-Id are required"
        )
    if not TIMESTAMP_FORMAT.fullmatch(timestamp):
        raise WebhookRejected(401, "X-MLflow-Timestamp is not a Unix timestamp (seconds, ASCII digits)")
    if not DELIVERY_ID_FORMAT.fullmatch(delivery_id):
        raise WebhookRejected(401, "X-MLflow-Delivery-Id is not an id (up to 128 letters, digits, '-', '_', '.')")
    age = (time.time() if now is None else now) - int(timestamp)
    if abs(age) > tolerance:
        raise WebhookRejected(
            401,
            f"stale delivery: its timestamp is {int(age)} s away from now "
            f"(tolerance {tolerance} s, WEBHOOK_TOLERANCE_SECONDS)",
        )
    if not hmac.compare_digest(sign(secret, delivery_id, timestamp, body).encode(), signature.encode()):
        raise WebhookRejected(401, "the signature does not match (is MLFLOW_WEBHOOK_SECRET the webhook's secret?)")
    return delivery_id


def find_run_id(name: str, version: str, source: str) -> str | None:
    """The run behind a model version when the event does not say it.

    MLflow 3 sends ``run_id: null`` when a logged model (``models:/m-<id>``) is registered: the run is
    the version's, else the logged model's source run.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        run_id = client.get_model_version(name, version).run_id
        if not run_id and source.startswith("models:/m-"):
            run_id = client.get_logged_model(source.removeprefix("models:/").split("/")[0]).source_run_id
    except MlflowException:
        return None
    return run_id or None


def builds_for(payload: Any, resolve: Callable[[str, str, str], str | None] | None = None) -> dict[str, Any] | None:
    """The build a ``model_version.created`` event asks for; None for events that build nothing.

    ``resolve(name, version, source)`` finds the run id when the event has none.
    """
    if not isinstance(payload, dict) or (payload.get("entity"), payload.get("action")) != ("model_version", "created"):
        return None
    data = payload.get("data")
    if not isinstance(data, dict):
        raise WebhookRejected(422, "model_version.created without a 'data' object")
    name, version, run_id = data.get("name"), data.get("version"), data.get("run_id")
    if not name or not version:
        raise WebhookRejected(422, "model_version.created needs data.name and data.version")
    source = str(data.get("source") or "")
    if not run_id and resolve is not None:
        run_id = resolve(str(name), str(version), source)
    if not run_id:
        raise WebhookRejected(
            422, f"model version {name}/{version} has no run_id, and MLflow knows none: no preprocessing to build"
        )
    try:
        check_run_id(str(run_id))
    except ValueError as exc:
        raise WebhookRejected(422, str(exc)) from exc
    model_source = source if MODEL_SOURCE.fullmatch(source) and ".." not in source else f"models:/{name}/{version}"
    try:
        names = {kind: image_name(kind, name, version) for kind in ("preprocessing", "model")}
    except ValidationError as exc:
        raise WebhookRejected(422, str(exc)) from exc
    return {
        "run_id": str(run_id),
        "image_name": names["preprocessing"],
        "model_source": model_source,
        "model_image_name": names["model"],
    }
