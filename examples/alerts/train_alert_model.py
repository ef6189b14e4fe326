"""A small alert classifier for the streaming demo, trained on the features of synthetic alerts.

It learns a toy label (a bright, short-lived, positive-difference source counts as a "transient")
from the output of alert_preprocessing.py, and is registered as `alert-classifier` in MLflow
(MLFLOW_TRACKING_URI, or MLflow's local store). Prints the model URI.
"""

from __future__ import annotations

import sys
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from alert_preprocessing import pre_processing  # noqa: E402
from generate_alerts import alerts  # noqa: E402

FEATURES = ["magpsf", "ndet", "time_span_days", "mean_mag"]


def main() -> str:
    frame = pd.DataFrame([pre_processing(alert) for alert in alerts(2000, seed=11, stamp_bytes=0)])
    label = ((frame["magpsf"] < 18) & (frame["time_span_days"] < 20) & frame["positive_diff"]).astype(int)
    features = frame[FEATURES].astype("float64")
    mlflow.set_experiment("alert-classifier")
    with mlflow.start_run(run_name="alert-classifier"):
        model = LogisticRegression(max_iter=1000).fit(features, label)
        mlflow.log_metric("train_accuracy", float(model.score(features, label)))
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(features, label),
            input_example=features.head(2),
            registered_model_name="alert-classifier",
        )
    uri = f"models:/alert-classifier/{info.registered_model_version}"
    print(uri)
    return uri


if __name__ == "__main__":
    main()
