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
from sklearn.metrics import roc_auc_score

from churn import data, features, model

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
    comparison: dict[str, float] | None = None

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
    training_data: pd.DataFrame | None = None,
) -> TrainingRun:
    """Params, metrics (if known yet), the model (signature, input example) and its preprocessing.

    ``training_data`` (the raw rows the model learnt from) is logged as the run's dataset input: the
    run page names it, with its digest and row count, so two runs say whether they saw the same data.
    """
    mlflow.set_experiment(experiment_name)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.set_tags({"model_name": model_name, "type": "preprocessing", "version": "unregistered"})
        mlflow.log_params(params)
        if metrics:
            mlflow.log_metrics(metrics)
        if training_data is not None:
            mlflow.log_input(
                mlflow.data.from_pandas(training_data, name=_dataset_name(training_data), targets=data.TARGET),
                context="training",
            )
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


def _dataset_name(frame: pd.DataFrame) -> str:
    """``customers 2025-01..2025-03`` for monthly data, ``customers`` otherwise."""
    if data.MONTH in frame.columns and len(frame):
        return f"customers {frame[data.MONTH].min()}..{frame[data.MONTH].max()}"
    return "customers"


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


def register(training: TrainingRun, model_name: str = "churn", tags: dict[str, str] | None = None) -> str:
    """A new model version, alias candidate-latest, tag validation_status=pending; the run learns its version."""
    client = MlflowClient()
    version = mlflow.register_model(training.model_uri, model_name, tags=tags).version
    client.set_registered_model_alias(model_name, CANDIDATE, version)
    client.set_model_version_tag(model_name, version, "validation_status", PENDING)
    client.set_model_version_tag(model_name, version, "run_id", training.run_id)
    client.set_tag(training.run_id, "version", f"v{version}")
    return str(version)


def _score(client: MlflowClient, model_name: str, version: str, metric: str) -> float:
    tags = client.get_model_version(model_name, version).tags
    run_id = tags.get("run_id") or client.get_model_version(model_name, version).run_id
    return float(client.get_run(run_id).data.metrics[metric])


def promote(
    model_name: str,
    version: str,
    metric: str = "roc_auc",
    threshold: float = 0.75,
    holdout: tuple[pd.DataFrame, pd.Series] | None = None,
    min_gain: float = 0.01,
) -> Promotion:
    """Move `champion` to ``version`` if it reaches ``threshold`` and beats the current champion.

    With ``holdout`` (features and target of data neither model has seen), both models are scored
    again on it and the challenger must win by ``min_gain`` at least, with the lower bound of the
    bootstrap interval of its gain above zero: a difference within the noise does not promote.
    Without it, the scores each run logged are compared (only meaningful on the same test data).
    """
    client = MlflowClient()
    try:
        champion = client.get_model_version_by_alias(model_name, CHAMPION).version
    except MlflowException:
        champion = None
    if champion is not None and str(champion) == str(version):
        champion = None
    if holdout is not None:
        approved, reason, score, champion_score, comparison = _compare_on_holdout(
            client, model_name, version, champion, holdout, threshold, min_gain
        )
    else:
        comparison = None
        score = _score(client, model_name, version, metric)
        champion_score = _score(client, model_name, champion, metric) if champion else None
        if score < threshold:
            approved, reason = False, f"{metric} {score:.4f} is below the threshold {threshold}"
        elif champion and champion_score is not None and score <= champion_score:
            approved, reason = False, f"{metric} {score:.4f} does not beat champion v{champion} ({champion_score:.4f})"
        else:
            beats = f" and beats champion v{champion} ({champion_score:.4f})" if champion else ""
            approved, reason = True, f"{metric} {score:.4f} >= {threshold}{beats}"
    if approved:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    client.set_model_version_tag(model_name, version, "validation_status", APPROVED if approved else REJECTED)
    client.set_model_version_tag(model_name, version, "validation_reason", reason)
    return Promotion(
        approved, str(version), score, str(champion) if champion else None, champion_score, reason, comparison
    )


def _compare_on_holdout(
    client: MlflowClient,
    model_name: str,
    version: str,
    champion: str | None,
    holdout: tuple[pd.DataFrame, pd.Series],
    threshold: float,
    min_gain: float,
) -> tuple[bool, str, float, float | None, dict[str, float] | None]:
    """Score challenger and champion on the same holdout; log the comparison into the challenger's run."""
    x, y = holdout

    def scores(of: str) -> Any:
        return mlflow.sklearn.load_model(f"models:/{model_name}/{of}").predict_proba(x)[:, 1]

    challenger = scores(version)
    run_id = client.get_model_version(model_name, version).tags.get("run_id")
    if champion is None:
        score = float(roc_auc_score(y, challenger))
        if run_id:
            client.log_metric(run_id, "holdout_roc_auc", score)
        if score < threshold:
            return False, f"holdout roc_auc {score:.4f} is below the threshold {threshold}", score, None, None
        return True, f"holdout roc_auc {score:.4f} >= {threshold} (first champion)", score, None, None
    result = model.compare(y, scores(champion), challenger)
    if run_id:
        for key, value in (
            ("holdout_roc_auc", result.challenger_auc),
            ("champion_holdout_roc_auc", result.champion_auc),
            ("holdout_gain", result.gain),
            ("holdout_gain_low", result.low),
            ("holdout_gain_high", result.high),
        ):
            client.log_metric(run_id, key, value)
    interval = f"gain {result.gain:+.4f}, {result.confidence:.0%} interval [{result.low:+.4f}, {result.high:+.4f}]"
    against = f"holdout roc_auc {result.challenger_auc:.4f} vs champion v{champion} {result.champion_auc:.4f}"
    if result.challenger_auc < threshold:
        approved, reason = False, f"{against}: below the threshold {threshold}"
    elif result.gain < min_gain or result.low <= 0:
        approved, reason = False, f"{against}: {interval}, not past the minimum gain {min_gain} beyond the noise"
    else:
        approved, reason = True, f"{against}: {interval}, past the minimum gain {min_gain}"
    return approved, reason, result.challenger_auc, result.champion_auc, result.as_dict()


def trained_months(model_name: str) -> set[str]:
    """The newest month each registered version of ``model_name`` was trained on (its ``data_month`` tag)."""
    try:
        versions = MlflowClient().search_model_versions(f"name='{model_name}'")
    except MlflowException:
        return set()
    return {v.tags["data_month"] for v in versions if "data_month" in v.tags}


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
