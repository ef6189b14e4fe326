"""Create an example MLflow run the runner can build an image from.

Against MLFLOW_TRACKING_URI (a server) or, when unset, MLflow's local sqlite store (./mlflow.db):
experiment `preprocessing-runs`, a run tagged model_name / version / type=preprocessing, holding
- preprocessing.py + requirements.txt at the artifact root,
- code/preprocessing.py, code/processor.py, code/__init__.py (a layout with sibling modules),
- a trained scikit-learn model with metrics, registered in the Model Registry.
Prints the model URI, then the run id alone on the last line.

    python setup_mlflow_local.py [--model-name model] [--version v1]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import mlflow
import numpy as np
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split

HERE = Path(__file__).resolve().parent
RUN_FILES = HERE / "examples" / "mlflow_run"
ROOT_PREPROCESSING = HERE / "examples" / "simple_preprocessing.py"
EXPERIMENT = "preprocessing-runs"
FEATURES = ["tenure_months", "monthly_charges", "support_calls"]


def training_data(rows: int = 600, seed: int = 42):
    """Synthetic churn data: short tenure, high charges and many support calls churn more."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 72, rows).astype(float)
    charges = rng.uniform(20, 120, rows).round(2)
    calls = rng.poisson(1.5, rows).astype(float)
    logit = -1.0 - 0.05 * tenure + 0.025 * charges + 0.6 * calls
    churn = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    import pandas as pd

    return pd.DataFrame({"tenure_months": tenure, "monthly_charges": charges, "support_calls": calls}), churn


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-name", default="model", help="tag model_name and registered model name")
    parser.add_argument("--version", default="v1", help="tag version (default v1)")
    args = parser.parse_args(argv)
    if "MLFLOW_TRACKING_URI" not in os.environ:
        print(f"MLFLOW_TRACKING_URI is not set: using {mlflow.get_tracking_uri()}", file=sys.stderr)
    mlflow.set_experiment(EXPERIMENT)
    features, labels = training_data()
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.25, random_state=42, stratify=labels
    )
    with mlflow.start_run(run_name=f"{args.model_name}-{args.version}") as run:
        mlflow.set_tags({"model_name": args.model_name, "version": args.version, "type": "preprocessing"})
        mlflow.log_artifacts(str(RUN_FILES))  # requirements.txt, code/...
        mlflow.log_text(ROOT_PREPROCESSING.read_text(), "preprocessing.py")  # the example, under the expected name
        model = LogisticRegression(C=1.0, max_iter=500).fit(x_train, y_train)
        predicted = model.predict(x_test)
        mlflow.log_params({"C": 1.0, "features": ",".join(FEATURES)})
        mlflow.log_metrics(
            {
                "accuracy": accuracy_score(y_test, predicted),
                "f1": f1_score(y_test, predicted),
                "roc_auc": roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]),
            }
        )
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x_train, predicted),
            input_example=x_train.head(2),
            registered_model_name=args.model_name,
        )
    version = info.registered_model_version
    print(f"model URI: models:/{args.model_name}/{version}")
    print(run.info.run_id)
    return run.info.run_id


if __name__ == "__main__":
    main()
