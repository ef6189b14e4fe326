"""Train and evaluate: LogisticRegression or RandomForest on the features of ``churn.features``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
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
    return _estimator(model_type, C, n_estimators, max_depth, random_state).fit(x, y)


def _estimator(
    model_type: ModelType, C: float, n_estimators: int, max_depth: int | None, random_state: int = 42
) -> Any:
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
    return model


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


def cross_validate(
    x: pd.DataFrame,
    y: pd.Series,
    model_type: ModelType = "logistic_regression",
    C: float = 1.0,
    n_estimators: int = 100,
    max_depth: int | None = None,
    folds: int = 5,
) -> dict[str, float]:
    """ROC AUC over ``folds`` stratified folds of the training data: its mean, and its spread.

    Models are chosen on this mean, never on the test set; the spread says how far apart two
    candidates must be before the difference means anything.
    """
    unfitted = _estimator(model_type, C, n_estimators, max_depth)
    splitter = StratifiedKFold(folds, shuffle=True, random_state=42)
    scores = cross_val_score(unfitted, x, y, cv=splitter, scoring="roc_auc")
    return {"cv_roc_auc": float(scores.mean()), "cv_roc_auc_std": float(scores.std())}


@dataclass
class Comparison:
    """Challenger minus champion ROC AUC on the same customers, with a bootstrap interval."""

    champion_auc: float
    challenger_auc: float
    gain: float
    low: float
    high: float
    confidence: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def compare(
    y: pd.Series,
    champion_scores: Any,
    challenger_scores: Any,
    rounds: int = 1000,
    confidence: float = 0.90,
    seed: int = 42,
) -> Comparison:
    """A paired bootstrap of the ROC AUC gain: both models scored on the same resampled customers.

    Resampling the holdout ``rounds`` times shows how much of the gain is luck of the draw; pairing
    (the same customers for both models) removes the noise the two share.
    """
    truth = np.asarray(y)
    champion, challenger = np.asarray(champion_scores), np.asarray(challenger_scores)
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(rounds):
        sample = rng.integers(0, len(truth), len(truth))
        if truth[sample].min() == truth[sample].max():
            continue  # one class only: no AUC
        gains.append(roc_auc_score(truth[sample], challenger[sample]) - roc_auc_score(truth[sample], champion[sample]))
    tail = (1 - confidence) / 2 * 100
    champion_auc, challenger_auc = float(roc_auc_score(truth, champion)), float(roc_auc_score(truth, challenger))
    return Comparison(
        champion_auc,
        challenger_auc,
        challenger_auc - champion_auc,
        float(np.percentile(gains, tail)),
        float(np.percentile(gains, 100 - tail)),
        confidence,
    )
