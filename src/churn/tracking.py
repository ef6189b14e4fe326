"""MLflow: the training run, the Model Registry (aliases, tags, promotion) and batch inference."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from churn import features

CANDIDATE, CHAMPION = "candidate-latest", "champion"
PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"
# MLflow saves scikit-learn models with skops, which refuses types it does not know to be safe: the
# tree storage of random forests, which we build ourselves, is one.
TRUSTED_TYPES = ["sklearn.tree._tree.Tree"]
# features.py needs only the standard library to serve records one by one.
SERVING_REQUIREMENTS = "# The churn preprocessing needs only the Python standard library.\n"


@dataclass
class TrainingRun:
    run_id: str
    model_uri: str
    metrics: dict[str, float]


@dataclass
class Promotion:
    approved: bool
    version: str
    score: float
    champion_version: str | None
    champion_score: float | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def log_training_run(
    model: Any,
    x_train: pd.DataFrame,
    metrics: dict[str, float] | None,
    params: dict[str, Any],
    experiment_name: str = "churn",
    model_name: str = "churn",
    run_name: str | None = None,
) -> TrainingRun:
    """Params, metrics (if known yet), the model (signature, input example) and its preprocessing."""
    mlflow.set_experiment(experiment_name)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.set_tags({"model_name": model_name, "type": "preprocessing", "version": "unregistered"})
        mlflow.log_params(params)
        if metrics:
            mlflow.log_metrics(metrics)
        example = x_train.head(5)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(example, model.predict(example)),
            input_example=example,
            skops_trusted_types=TRUSTED_TYPES,
        )
        mlflow.log_text(Path(features.__file__).read_text(), "preprocessing.py")  # served by the runner
        mlflow.log_text(SERVING_REQUIREMENTS, "requirements.txt")
    return TrainingRun(run.info.run_id, info.model_uri, metrics or {})


def run_of(model_uri: str) -> str:
    """The run that logged ``models:/m-<id>`` (or ``runs:/<id>/...``)."""
    if model_uri.startswith("runs:/"):
        return model_uri.removeprefix("runs:/").split("/")[0]
    return MlflowClient().get_logged_model(model_uri.removeprefix("models:/")).source_run_id


def log_metrics(run_id: str, metrics: dict[str, float]) -> None:
    """Metrics computed after training (an evaluation step of its own) into the training run."""
    client = MlflowClient()
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)


def register(training: TrainingRun, model_name: str = "churn") -> str:
    """A new model version, alias candidate-latest, tag validation_status=pending; the run learns its version."""
    client = MlflowClient()
    version = mlflow.register_model(training.model_uri, model_name).version
    client.set_registered_model_alias(model_name, CANDIDATE, version)
    client.set_model_version_tag(model_name, version, "validation_status", PENDING)
    client.set_model_version_tag(model_name, version, "run_id", training.run_id)
    client.set_tag(training.run_id, "version", f"v{version}")
    return str(version)


def _score(client: MlflowClient, model_name: str, version: str, metric: str) -> float:
    tags = client.get_model_version(model_name, version).tags
    run_id = tags.get("run_id") or client.get_model_version(model_name, version).run_id
    return float(client.get_run(run_id).data.metrics[metric])


def promote(model_name: str, version: str, metric: str = "roc_auc", threshold: float = 0.75) -> Promotion:
    """Move `champion` to ``version`` if it reaches ``threshold`` and beats the current champion."""
    client = MlflowClient()
    score = _score(client, model_name, version, metric)
    try:
        champion = client.get_model_version_by_alias(model_name, CHAMPION).version
    except MlflowException:
        champion = None
    champion_score = _score(client, model_name, champion, metric) if champion else None
    if score < threshold:
        approved, reason = False, f"{metric} {score:.4f} is below the threshold {threshold}"
    elif champion and str(champion) != str(version) and champion_score is not None and score <= champion_score:
        approved, reason = False, f"{metric} {score:.4f} does not beat champion v{champion} ({champion_score:.4f})"
    else:
        approved, reason = (
            True,
            f"{metric} {score:.4f} >= {threshold}"
            + (
                f" and beats champion v{champion} ({champion_score:.4f})"
                if champion and champion_score is not None
                else ""
            ),
        )
    if approved:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    client.set_model_version_tag(model_name, version, "validation_status", APPROVED if approved else REJECTED)
    client.set_model_version_tag(model_name, version, "validation_reason", reason)
    return Promotion(approved, str(version), score, str(champion) if champion else None, champion_score, reason)


def batch_predict(model_uri: str, input_csv: str | Path, output_csv: str | Path) -> int:
    """Predict every row of a raw customer CSV with ``models:/<name>@<alias>`` or a run URI; rows written."""
    raw = pd.read_csv(input_csv)
    frame = features.transform_frame(raw.drop(columns=["Churn"], errors="ignore"))
    model = mlflow.sklearn.load_model(model_uri)
    out = pd.DataFrame(
        {
            features.ID: frame.index,
            "prediction": model.predict(frame),
            "churn_probability": model.predict_proba(frame)[:, 1].round(6),
        }
    )
    Path(output_csv).parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(output_csv, index=False)
    return len(out)
