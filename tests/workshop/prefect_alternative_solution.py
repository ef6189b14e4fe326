"""A correct answer to the Prefect exercises written unlike the shipped solution: the checker must accept it.

Exponential backoff, a content hash as cache key, renamed tasks, ``.map`` for the parallel training,
hooks with other names, pydantic-annotated parameters and a cron schedule.
"""

from __future__ import annotations

import hashlib
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from prefect import flow, task, unmapped
from prefect.tasks import exponential_backoff
from pydantic import Field

from churn import data, exercises, features, model, pipeline, tracking, workshop

EXPERIMENT = "churn-prefect-alternative"
MODEL_NAME = "churn-prefect-alternative"
SOURCE = workshop.FlakySource(workshop.data_path(), failures=0, failure_rate=workshop.settings().workshop_failure_rate)


@task(name="Charger les clients", retries=4, retry_delay_seconds=exponential_backoff(backoff_factor=10))
def load_customer_data() -> pd.DataFrame:
    return SOURCE.fetch()


@task(name="Découper")
def split_data(frame: pd.DataFrame, test_size_ratio: float) -> data.Split:
    return data.split(frame, test_size_ratio)


def frame_hash(context: Any, parameters: dict[str, Any]) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(parameters["raw"]).values.tobytes()).hexdigest()


@task(cache_key_fn=frame_hash, cache_expiration=timedelta(hours=12))
def engineer_features(raw: pd.DataFrame) -> pd.DataFrame:
    return features.transform_frame(raw)


@task(task_run_name="train-{model_type}")
def train_model(x: pd.DataFrame, y: pd.Series, model_type: str, C: float, n_estimators: int) -> Any:
    return model.train(x, y, model_type, C, n_estimators)  # type: ignore[arg-type]


@task
def evaluate_model(estimator: Any, x: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    return model.evaluate(estimator, x, y)


@task(name="MLflow : run")
def log_to_mlflow(
    estimator: Any, x_train: pd.DataFrame, metrics: dict[str, float], params: dict[str, Any], model_name: str
) -> tracking.TrainingRun:
    return tracking.log_training_run(estimator, x_train, metrics, params, EXPERIMENT, model_name)


@task(name="MLflow : registre")
def register_model(run: tracking.TrainingRun, model_name: str) -> str:
    return tracking.register(run, model_name)


def tell_the_team(flow: Any, flow_run: Any, state: Any) -> None:
    workshop.notify(f"{flow_run.name} : {state.name}")


@flow(name="churn-alternative", on_completion=[tell_the_team], on_failure=[tell_the_team])
def churn_training_pipeline(
    model_type: Literal["logistic_regression", "random_forest"] = "random_forest",
    C: Annotated[float, Field(gt=0)] = 1.0,
    n_estimators: Annotated[int, Field(ge=1)] = 50,
    test_size_ratio: float = 0.2,
) -> dict[str, Any]:
    workshop.configure_mlflow(EXPERIMENT)
    raw = load_customer_data()
    split = split_data(raw, test_size_ratio)
    x_train, x_test = engineer_features(split.x_train), engineer_features(split.x_test)
    kinds = ["random_forest", "logistic_regression"]
    estimators = train_model.map(unmapped(x_train), unmapped(split.y_train), kinds, C, n_estimators).result()
    scores = [evaluate_model(estimator, x_test, split.y_test) for estimator in estimators]
    best = max(range(len(kinds)), key=lambda index: scores[index]["roc_auc"])
    params = pipeline.training_params(kinds[best], C, n_estimators, None, test_size_ratio, len(raw))
    run = log_to_mlflow(estimators[best], x_train, scores[best], params, MODEL_NAME)
    version = register_model(run, MODEL_NAME)
    return {"run_id": run.run_id, "version": version, "metrics": scores[best]}


def build_deployment() -> Any:
    return churn_training_pipeline.to_deployment(name="nightly", cron="0 3 * * *")


if __name__ == "__main__":
    sys.exit(exercises.main(Path(__file__)))
