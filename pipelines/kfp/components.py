"""KFP components: thin wrappers that call the `churn` package's steps (the logic lives there).

On a cluster (and with kfp.local's DockerRunner) the components run in KFP_IMAGE, built from this
project by docker/Dockerfile.kfp: it holds the churn package, what it imports (pandas, scikit-learn,
MLflow) and kfp itself, so a pod installs nothing at start (no network needed beyond MLflow's).
Locally (run_local.py) they run in this virtualenv.
"""

import os

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

# The image docker/Dockerfile.kfp builds (scripts/build_kfp_image.sh); push it where the cluster pulls from
# and compile with KFP_IMAGE=<registry>/churn-kfp:<tag>.
IMAGE = os.environ.get("KFP_IMAGE", "churn-kfp:latest")


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def load_and_preprocess_data(
    churn_dataset_uri: str,
    test_size_ratio: float,
    x_train: Output[Dataset],
    y_train: Output[Dataset],
    x_test: Output[Dataset],
    y_test: Output[Dataset],
):
    """Split stratified (random_state=42) and turn raw columns into the model's features, as CSV."""
    from churn import data, features

    split = data.load_and_split(churn_dataset_uri, test_size_ratio)
    features.transform_frame(split.x_train).to_csv(x_train.path)
    features.transform_frame(split.x_test).to_csv(x_test.path)
    split.y_train.to_csv(y_train.path, index=False)
    split.y_test.to_csv(y_test.path, index=False)


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train_model(
    x_train: Input[Dataset],
    y_train: Input[Dataset],
    mlflow_tracking_uri: str,
    mlflow_experiment_name: str,
    model_name: str,
    model_type: str,
    C: float,
    n_estimators: int,
    max_depth: int,
    model: Output[Model],
) -> str:
    """Train, log the MLflow run (params, model, preprocessing); return the MLflow model URI."""
    import joblib
    import mlflow
    import pandas as pd

    from churn import model as steps
    from churn import tracking

    mlflow.set_tracking_uri(mlflow_tracking_uri)
    x = pd.read_csv(x_train.path, index_col=0)
    y = pd.read_csv(y_train.path).iloc[:, 0]
    depth = max_depth if max_depth > 0 else None
    estimator = steps.train(x, y, model_type, C, n_estimators, depth)
    params = {"model_type": model_type, "C": C, "n_estimators": n_estimators, "max_depth": depth, "rows": len(x)}
    run = tracking.log_training_run(estimator, x, None, params, mlflow_experiment_name, model_name)
    joblib.dump(estimator, model.path)
    model.metadata.update({"mlflow_model_uri": run.model_uri, "mlflow_run_id": run.run_id})
    return run.model_uri


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate_model(
    x_test: Input[Dataset],
    y_test: Input[Dataset],
    model: Input[Model],
    model_uri: str,
    mlflow_tracking_uri: str,
    metrics: Output[Metrics],
) -> float:
    """Accuracy, precision, recall, F1, ROC AUC: into KFP's metrics and the MLflow run; returns ROC AUC."""
    import joblib
    import mlflow
    import pandas as pd

    from churn import model as steps
    from churn import tracking

    mlflow.set_tracking_uri(mlflow_tracking_uri)
    scores = steps.evaluate(
        joblib.load(model.path), pd.read_csv(x_test.path, index_col=0), pd.read_csv(y_test.path).iloc[:, 0]
    )
    tracking.log_metrics(tracking.run_of(model_uri), scores)
    for key, value in scores.items():
        metrics.log_metric(key, value)
    return scores["roc_auc"]


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register_and_promote(model_uri: str, mlflow_tracking_uri: str, model_name: str, min_roc_auc: float) -> str:
    """Register a version (alias candidate-latest, pending), then promote it to champion or reject it."""
    import json

    import mlflow

    from churn import tracking

    mlflow.set_tracking_uri(mlflow_tracking_uri)
    run = tracking.TrainingRun(tracking.run_of(model_uri), model_uri, {})
    version = tracking.register(run, model_name)
    return json.dumps(tracking.promote(model_name, version, threshold=min_roc_auc).as_dict())


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def batch_inference(
    churn_dataset_uri: str, model_uri: str, mlflow_tracking_uri: str, predictions: Output[Dataset]
) -> int:
    """One prediction per row of the dataset, with ``models:/<name>@<alias>`` or a run URI."""
    import mlflow

    from churn import tracking

    mlflow.set_tracking_uri(mlflow_tracking_uri)
    return tracking.batch_predict(model_uri, churn_dataset_uri, predictions.path)
