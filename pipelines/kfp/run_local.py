"""``python -m pipelines.kfp.run_local [training|inference]``: run a pipeline here with KFP's local
runners (no Kubernetes), against MLFLOW_TRACKING_URI (MLflow's local store when unset).

Options come from the environment: CHURN_DATASET_URI (data/customer_data.csv), MODEL_TYPE, MIN_ROC_AUC,
MODEL_NAME (churn), MODEL_URI (models:/churn@champion), KFP_PIPELINE_ROOT (build/kfp-local), and
KFP_RUNNER: ``subprocess`` (default, this virtualenv) or ``docker`` (each component in KFP_IMAGE, as on a
cluster, on the host network; the dataset must then lie under KFP_PIPELINE_ROOT, the folder mounted).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from kfp import local

from pipelines.kfp.pipelines import inference_pipeline, training_pipeline


def run(which: str = "training", **overrides: Any) -> Any:
    import mlflow

    root = Path(os.environ.get("KFP_PIPELINE_ROOT", "build/kfp-local")).resolve()
    kind = os.environ.get("KFP_RUNNER", "subprocess")
    if kind not in ("subprocess", "docker"):
        raise SystemExit(f"KFP_RUNNER={kind!r}: expected 'subprocess' or 'docker'")
    # DockerRunner uses a local image when it has the tag (no registry needed), else pulls it.
    runner = local.DockerRunner(network_mode="host") if kind == "docker" else local.SubprocessRunner(use_venv=False)
    local.init(runner=runner, pipeline_root=str(root))
    common = {
        "churn_dataset_uri": str(Path(os.environ.get("CHURN_DATASET_URI", "data/customer_data.csv")).resolve()),
        "mlflow_tracking_uri": mlflow.get_tracking_uri(),
        "model_name": os.environ.get("MODEL_NAME", "churn"),
    }
    if which == "training":
        arguments = {
            **common,
            "model_type": os.environ.get("MODEL_TYPE", "logistic_regression"),
            "min_roc_auc": float(os.environ.get("MIN_ROC_AUC", "0.75")),
            **overrides,
        }
        return training_pipeline(**arguments)
    arguments = {**common, "model_uri": os.environ.get("MODEL_URI", "models:/churn@champion"), **overrides}
    return inference_pipeline(**arguments)


if __name__ == "__main__":
    task = run(sys.argv[1] if len(sys.argv) > 1 else "training")
    print(f"pipeline output: {task.outputs['Output']}")
