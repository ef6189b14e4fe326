"""Train and evaluate: LogisticRegression or RandomForest on the features of ``churn.features``."""

from __future__ import annotations

from typing import Any, Literal

import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

ModelType = Literal["logistic_regression", "random_forest"]


def train(
    x: pd.DataFrame,
    y: pd.Series,
    model_type: ModelType = "logistic_regression",
    C: float = 1.0,
    n_estimators: int = 100,
    max_depth: int | None = None,
    random_state: int = 42,
) -> Any:
    """A fitted scikit-learn estimator on feature frames (see ``churn.features.transform_frame``)."""
    if model_type == "logistic_regression":
        model: Any = Pipeline(
            [("scale", StandardScaler()), ("model", LogisticRegression(C=C, max_iter=2000, random_state=random_state))]
        )
    elif model_type == "random_forest":
        model = RandomForestClassifier(
            n_estimators=n_estimators, max_depth=max_depth, random_state=random_state, n_jobs=1
        )
    else:
        raise ValueError(f"unknown model_type {model_type!r}: logistic_regression or random_forest")
    return model.fit(x, y)


def evaluate(model: Any, x: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and ROC AUC on held-out data."""
    predicted = model.predict(x)
    scores = model.predict_proba(x)[:, 1]
    return {
        "accuracy": float(accuracy_score(y, predicted)),
        "precision": float(precision_score(y, predicted, zero_division=0)),
        "recall": float(recall_score(y, predicted, zero_division=0)),
        "f1": float(f1_score(y, predicted, zero_division=0)),
        "roc_auc": float(roc_auc_score(y, scores)),
    }


def baseline_accuracy(y: pd.Series) -> float:
    """What always predicting the majority class scores."""
    return float(max(y.mean(), 1 - y.mean()))
