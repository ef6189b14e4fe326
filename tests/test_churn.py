"""The churn ML project against a real MLflow server: steps, registry promotion, inference, KFP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import MLPREP, ROOT
from mlflow import MlflowClient

from churn import data, features, model, pipeline, tracking


@pytest.fixture
def tracking_server(mlflow_server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    mlflow.set_tracking_uri(mlflow_server.url)
    return mlflow_server


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("churn") / "customer_data.csv"
    result = subprocess.run(
        [sys.executable, str(ROOT / "generate_sample_data.py"), "--rows", "1500", "--seed", "7", "--out", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return path


def test_sample_data_is_seeded_realistic_and_learnable(dataset, tmp_path):
    frame = pd.read_csv(dataset)
    assert len(frame) == 1500 and frame["customer_id"].is_unique
    assert {
        "tenure_months",
        "contract",
        "monthly_charges",
        "total_charges",
        "payment_method",
        "support_calls",
        "Churn",
    } <= set(frame.columns)
    assert 0.15 < frame["Churn"].mean() < 0.5
    assert data.generate(50, seed=7).equals(data.generate(50, seed=7))
    split = data.load_and_split(dataset, 0.25)
    assert len(split.x_test) == 375 and abs(split.y_test.mean() - split.y_train.mean()) < 0.02  # stratified
    fitted = model.train(features.transform_frame(split.x_train), split.y_train)
    scores = model.evaluate(fitted, features.transform_frame(split.x_test), split.y_test)
    assert scores["accuracy"] > model.baseline_accuracy(split.y_test) + 0.05
    assert scores["roc_auc"] > 0.8
    shipped = ROOT / "data" / "customer_data.csv"
    assert shipped.stat().st_size < 500_000 and len(pd.read_csv(shipped)) == 2000


def test_monthly_customers_drift_after_the_price_rise():
    months = data.generate_months(4, rows=800)
    assert data.generate_month(2).equals(data.generate_month(2))  # a month is always the same table
    assert months["customer_id"].is_unique and sorted(months[data.MONTH].unique()) == [
        "2025-01",
        "2025-02",
        "2025-03",
        "2025-04",
    ]
    by_month = months.groupby(data.MONTH).agg(churn=("Churn", "mean"), price=("monthly_charges", "mean"))
    before, after = by_month.loc[["2025-01", "2025-02"]], by_month.loc[["2025-03", "2025-04"]]
    assert after["price"].min() > before["price"].max() * 1.05  # prices rise...
    assert after["churn"].min() > before["churn"].max() + 0.05  # ...and churn with them
    split = data.split_newest_month(months)
    assert set(split.x_test[data.MONTH]) == {"2025-04"} and len(split.x_test) == 400
    assert len(split.x_train) == 2800 and not set(split.x_train.index) & set(split.x_test.index)
    with pytest.raises(ValueError, match="test_size_ratio must be between 0 and 1"):
        data.split_newest_month(months, 1.5)


def test_the_bootstrap_gain_interval_separates_a_real_gain_from_noise():
    months = data.generate_months(3)
    split = data.split_newest_month(months)
    x_test = features.transform_frame(split.x_test)
    fitted = model.train(features.transform_frame(split.x_train), split.y_train)
    scores = fitted.predict_proba(x_test)[:, 1]
    same = model.compare(split.y_test, scores, scores)
    assert same.gain == same.low == same.high == 0
    noisy = scores + np.random.default_rng(0).normal(0, 0.3, len(scores))
    better = model.compare(split.y_test, noisy, scores)
    assert better.low > 0 and better.low <= better.gain <= better.high
    assert better.gain == pytest.approx(better.challenger_auc - better.champion_auc)
    cv = model.cross_validate(features.transform_frame(split.x_train), split.y_train)
    assert 0.7 < cv["cv_roc_auc"] < 1 and 0 < cv["cv_roc_auc_std"] < 0.05


def test_steps_end_to_end_with_registry_promotion(tracking_server, dataset, tmp_path):
    name = f"churn-{uuid.uuid4().hex[:6]}"
    client = MlflowClient()
    first = pipeline.run_training(dataset, model_name=name, experiment_name=name)
    assert first["promotion"]["approved"]
    run = client.get_run(first["run_id"])
    assert {"accuracy", "precision", "recall", "f1", "roc_auc"} <= set(run.data.metrics)
    assert run.data.params["model_type"] == "logistic_regression"
    assert (run.data.tags["model_name"], run.data.tags["type"], run.data.tags["version"]) == (
        name,
        "preprocessing",
        "v1",
    )
    assert {a.path for a in client.list_artifacts(first["run_id"])} >= {"preprocessing.py", "requirements.txt"}
    logged = mlflow.models.get_model_info(first["model_uri"])
    assert logged.signature is not None and logged.saved_input_example_info is not None
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    assert client.get_model_version_by_alias(name, "candidate-latest").version == "1"
    assert client.get_model_version(name, "1").tags["validation_status"] == "approved"

    def weak_forest(threshold: float) -> dict:
        return pipeline.run_training(
            dataset,
            model_name=name,
            experiment_name=name,
            model_type="random_forest",
            n_estimators=2,
            max_depth=1,
            threshold=threshold,
        )

    worse = weak_forest(0.5)  # passes the threshold, but is worse than the champion
    assert not worse["promotion"]["approved"]
    assert "does not beat champion v1" in worse["promotion"]["reason"]
    assert client.get_model_version_by_alias(name, "champion").version == "1"  # champion did not move
    assert client.get_model_version_by_alias(name, "candidate-latest").version == "2"
    assert client.get_model_version(name, "2").tags["validation_status"] == "rejected"

    below = weak_forest(0.99)
    assert "below the threshold" in below["promotion"]["reason"]

    out = tmp_path / "predictions.csv"
    rows = tracking.batch_predict(f"models:/{name}@champion", dataset, out)
    predictions = pd.read_csv(out)
    assert rows == len(predictions) == 1500
    assert set(predictions["prediction"]) <= {0, 1}
    assert predictions["customer_id"].tolist() == pd.read_csv(dataset)["customer_id"].tolist()


def test_the_runner_fetches_and_applies_the_training_preprocessing(tracking_server, dataset, tmp_path):
    name = f"churn-{uuid.uuid4().hex[:6]}"
    result = pipeline.run_training(dataset, model_name=name, experiment_name=name)
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_server.url}
    fetched = subprocess.run(
        [*MLPREP, "fetch", result["run_id"], str(tmp_path / "code")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert fetched.returncode == 0, fetched.stderr
    records = pd.read_csv(dataset).head(20).drop(columns=["Churn"]).to_dict(orient="records")
    stdin = "".join(json.dumps(r) + "\n" for r in records).encode()
    ran = subprocess.run(
        [*MLPREP, "run", "-p", str(tmp_path / "code")], input=stdin, capture_output=True, env=env, check=False
    )
    assert ran.returncode == 0, ran.stderr
    outputs = [json.loads(line) for line in ran.stdout.splitlines()]
    assert outputs == [features.pre_processing(r) for r in records]  # the same transformation as training
    frame = pd.DataFrame(outputs).set_index("customer_id")[features.FEATURES]
    assert len(mlflow.sklearn.load_model(result["model_uri"]).predict(frame)) == 20


def test_kfp_pipelines_compile_with_their_parameters(tmp_path):
    from pipelines.kfp.compile import compile_all

    written = compile_all(tmp_path)
    assert [p.name for p in written] == ["training_pipeline.yaml", "inference_pipeline.yaml"]
    spec = yaml.safe_load(written[0].read_text())
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert {
        "churn_dataset_uri",
        "mlflow_tracking_uri",
        "mlflow_experiment_name",
        "model_name",
        "test_size_ratio",
    } <= set(parameters)
    assert {"load-and-preprocess-data", "train-model", "evaluate-model"} <= set(spec["root"]["dag"]["tasks"])
    assert "condition-1" in spec["root"]["dag"]["tasks"] or any("condition" in t for t in spec["root"]["dag"]["tasks"])
    # A pipeline submitted again trains and registers again: those steps never come from KFP's cache.
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks["load-and-preprocess-data"]["cachingOptions"] == {"enableCache": True}
    assert not tasks["train-model"].get("cachingOptions", {}).get("enableCache")
    register = spec["components"]["comp-condition-1"]["dag"]["tasks"]["register-and-promote"]
    assert not register.get("cachingOptions", {}).get("enableCache")
    # Every component runs in the project's image, which already holds kfp: pods install nothing.
    for executor in spec["deploymentSpec"]["executors"].values():
        assert executor["container"]["image"] == "churn-kfp:latest"
        assert "pip install" not in " ".join(executor["container"]["command"])


def test_kfp_pipelines_run_locally_and_leave_the_registry_state(tracking_server, dataset, tmp_path):
    name = f"churn-kfp-{uuid.uuid4().hex[:6]}"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": tracking_server.url,
        "CHURN_DATASET_URI": str(dataset),
        "MODEL_NAME": name,
        "KFP_PIPELINE_ROOT": str(tmp_path / "root"),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),  # this checkout's churn
    }
    training = subprocess.run(
        [sys.executable, "-m", "pipelines.kfp.run_local", "training"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert training.returncode == 0, training.stderr[-3000:]
    client = MlflowClient()
    champion = client.get_model_version_by_alias(name, "champion")
    assert champion.tags["validation_status"] == "approved"
    run = client.get_run(champion.tags["run_id"])
    assert run.data.metrics["roc_auc"] > 0.8 and run.data.tags["model_name"] == name
    inference = subprocess.run(
        [sys.executable, "-m", "pipelines.kfp.run_local", "inference"],
        cwd=ROOT,
        env={**env, "MODEL_URI": f"models:/{name}@champion"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert inference.returncode == 0, inference.stderr[-3000:]
    assert "pipeline output: 1500" in inference.stdout


# What docker/Dockerfile.kfp is built from (its context, as .dockerignore leaves it), and the script that builds it.
KFP_IMAGE_INPUTS = [
    "scripts/build_kfp_image.sh",
    ".dockerignore",
    "docker/Dockerfile.kfp",
    "locks/kfp-image.txt",
    "pyproject.toml",
    "README.md",
    "src",
]


def build_kfp_image(tag: str, base_image: str) -> None:
    """scripts/build_kfp_image.sh TAG on the local base image."""
    built = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build_kfp_image.sh"), tag],
        env={**os.environ, "BASE_IMAGE": base_image},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]


def test_kfp_pipeline_runs_in_the_project_image_with_the_docker_runner(base_image, tmp_path):
    """docker/Dockerfile.kfp holds what the components import: the pipeline runs in it as on a cluster.
    The image is built by scripts/build_kfp_image.sh, again whenever what it is built from changes."""
    from infra import MlflowServer, cached_image

    tag = cached_image("churn-kfp-test", KFP_IMAGE_INPUTS, base_image, lambda tag: build_kfp_image(tag, base_image))
    server = MlflowServer(serve_artifacts=True)  # the containers send artifacts over HTTP
    root = tmp_path / "root"
    root.mkdir()
    dataset = root / "customer_data.csv"  # under the pipeline root: the folder DockerRunner mounts
    data.generate(800, seed=3).to_csv(dataset, index=False)
    name = f"churn-docker-{uuid.uuid4().hex[:6]}"
    try:
        training = subprocess.run(
            [sys.executable, "-m", "pipelines.kfp.run_local", "training"],
            cwd=ROOT,
            env={
                **os.environ,
                **server.env(),
                "KFP_RUNNER": "docker",
                "KFP_IMAGE": tag,
                "CHURN_DATASET_URI": str(dataset),
                "MODEL_NAME": name,
                "KFP_PIPELINE_ROOT": str(root),
                "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),  # this checkout's churn
            },
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert training.returncode == 0, training.stdout[-3000:] + training.stderr[-3000:]
        assert f"Found image '{tag}'" in training.stdout + training.stderr  # the local image, no pull
        client = MlflowClient(tracking_uri=server.url)
        champion = client.get_model_version_by_alias(name, "champion")
        assert client.get_run(champion.tags["run_id"]).data.metrics["roc_auc"] > 0.75
    finally:
        server.stop()
