"""The whole training pipeline as plain calls (what each orchestrator wraps in its own tasks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from churn import data, features, model, tracking


def training_params(
    model_type: str, C: float, n_estimators: int, max_depth: int | None, test_size_ratio: float, rows: int
) -> dict[str, Any]:
    """The parameters every orchestrator logs with a training run, under the same names."""
    return {
        "model_type": model_type,
        "C": C,
        "n_estimators": n_estimators,
        "max_depth": max_depth,
        "test_size_ratio": test_size_ratio,
        "random_state": data.RANDOM_STATE,
        "rows": rows,
    }


def run_training(
    data_path: str | Path,
    model_name: str = "churn",
    experiment_name: str = "churn",
    model_type: model.ModelType = "logistic_regression",
    C: float = 1.0,
    n_estimators: int = 100,
    max_depth: int | None = None,
    test_size_ratio: float = 0.2,
    threshold: float = 0.75,
) -> dict[str, Any]:
    """Split, featurise, validate, train, evaluate, log, register, promote. Returns what happened.

    Promotion compares cross-validated ROC AUC on the training split (``cv_roc_auc``): the test
    split gives the final figure of each model, never the choice between them.
    """
    split = data.load_and_split(data_path, test_size_ratio)
    x_train, x_test = features.transform_frame(split.x_train), features.transform_frame(split.x_test)
    cv = model.cross_validate(x_train, split.y_train, model_type, C, n_estimators, max_depth)
    estimator = model.train(x_train, split.y_train, model_type, C, n_estimators, max_depth)
    metrics = model.evaluate(estimator, x_test, split.y_test)
    params = training_params(
        model_type, C, n_estimators, max_depth, test_size_ratio, len(split.x_train) + len(split.x_test)
    )
    training_data = split.x_train.assign(**{data.TARGET: split.y_train})
    run = tracking.log_training_run(
        estimator, x_train, {**metrics, **cv}, params, experiment_name, model_name, training_data=training_data
    )
    version = tracking.register(run, model_name)
    promotion = tracking.promote(model_name, version, metric="cv_roc_auc", threshold=threshold)
    return {
        "run_id": run.run_id,
        "model_uri": run.model_uri,
        "version": version,
        "metrics": metrics,
        "cv": cv,
        "baseline_accuracy": model.baseline_accuracy(split.y_test),
        "promotion": promotion.as_dict(),
    }
