"""MLflow Model Registry webhooks: signature check (as MLflow signs them), what to build or promote.

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
from collections.abc import Callable, Collection, Mapping
from typing import Any

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
        found = client.get_model_version(name, version)
        run_id, source = found.run_id, source or str(found.source or "")
        if not run_id and source.startswith("models:/m-"):
            run_id = client.get_logged_model(source.removeprefix("models:/").split("/")[0]).source_run_id
    except MlflowException:
        return None
    return run_id or None


def builds_for(
    payload: Any,
    resolve: Callable[[str, str, str], str | None] | None = None,
    aliases: Collection[str] = (),
) -> dict[str, Any] | None:
    """The build a ``model_version.created`` event asks for, or the promotion a
    ``model_version_alias.created`` event of one of ``aliases`` asks for; None for events that do nothing.

    ``resolve(name, version, source)`` finds the run id when the event has none (always, for an alias).
    """
    if not isinstance(payload, dict):
        return None
    event = (payload.get("entity"), payload.get("action"))
    if event not in (("model_version", "created"), ("model_version_alias", "created")):
        return None
    what = ".".join(map(str, event))
    data = payload.get("data")
    if not isinstance(data, dict):
        raise WebhookRejected(422, f"{what} without a 'data' object")
    name, version, run_id = data.get("name"), data.get("version"), data.get("run_id")
    alias = data.get("alias") if event[0] == "model_version_alias" else None
    if event[0] == "model_version_alias" and alias not in aliases:
        return None
    if not name or not version:
        raise WebhookRejected(422, f"{what} needs data.name and data.version")
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
    try:
        names = {kind: image_name(kind, name, version) for kind in ("preprocessing", "model")}
    except ValidationError as exc:
        raise WebhookRejected(422, str(exc)) from exc
    wanted: dict[str, Any] = {
        "run_id": str(run_id),
        "image_name": names["preprocessing"],
        # the registered version (not the logged model it points to): its image is recorded on it
        "model_source": f"models:/{name}/{version}",
        "model_image_name": names["model"],
    }
    if alias:
        wanted["alias"] = alias
    return wanted


def main(argv: list[str] | None = None) -> int:
    """``python -m mlprep.build.api.webhooks run-id NAME VERSION [SOURCE]``: ``run_id=<id>`` for CI outputs.

    The run of a model version, through MLflow (MLFLOW_TRACKING_URI) when its event carried ``run_id: null``.
    """
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (3, 4) or args[0] != "run-id":
        print("usage: python -m mlprep.build.api.webhooks run-id MODEL_NAME MODEL_VERSION [SOURCE]", file=sys.stderr)
        return 2
    run_id = find_run_id(args[1], args[2], args[3] if len(args) == 4 else "")
    if not run_id:
        print(f"MLflow knows no run of model version {args[1]}/{args[2]}: no preprocessing to build", file=sys.stderr)
        return 1
    print(f"run_id={check_run_id(run_id)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
