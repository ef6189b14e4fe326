"""One image holding a run's preprocessing and its registered model (``build --with-model``): a real
Docker engine, the churn model on the session's real MLflow server, real containers."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from conftest import ROOT, run_cli

CACHE_TAG = "mlprep-test-with-model:layers"
IN_CONTAINER = """
import json, os, sys
from mlprep.runtime.core import Preprocessor
from mlprep.runtime.inference import predict_records
from mlprep.runtime.model import ServedModel

model = ServedModel(os.environ["MODEL_URI"])
done = predict_records(Preprocessor.load(os.environ["PREPROCESSING_DIR"]), model, json.load(sys.stdin))
failures = {str(index): reason for index, (stage, reason) in done.failures.items()}
print(json.dumps({"state": model.state(), "predictions": done.predictions, "failures": failures,
                  "model_error": done.model_error}))
"""


def docker(*args: str, stdin: bytes | None = None, timeout: float = 180) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["docker", *args], input=stdin, capture_output=True, timeout=timeout, check=False)


def image_id(reference: str) -> str:
    found = docker("image", "inspect", "--format", "{{.Id}}", reference)
    assert found.returncode == 0, found.stderr.decode()
    return found.stdout.decode().strip()


def config(reference: str) -> dict:
    return json.loads(docker("inspect", "--format", "{{json .Config}}", reference).stdout)


@dataclass(frozen=True)
class Images:
    alone: str  # the run's preprocessing-only image, as `mlprep build RUN_ID` names it
    alone_id: str  # its image id before the image with the model was built
    with_model: str  # `./build.sh RUN_ID --with-model URI`


@pytest.fixture(scope="module")
def images(mlflow_server, churn_model, base_image) -> Iterator[Images]:
    """Both images of the churn run: the preprocessing alone, then with the model (one build each)."""
    env = {**mlflow_server.env(), "MLPREP_BASE_IMAGE": base_image}
    alone = run_cli("build", churn_model.run_id, env=env, timeout=900)
    assert alone.returncode == 0, alone.stderr.decode()[-3000:]
    reference = alone.stdout.decode().strip().splitlines()[-1]
    assert reference == f"preprocessing-{churn_model.name}-v{churn_model.version}:latest"
    alone_id = image_id(reference)
    combined = subprocess.run(
        [str(ROOT / "build.sh"), churn_model.run_id, "--with-model", churn_model.uri],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=1800,
        check=False,
    )
    assert combined.returncode == 0, combined.stdout[-3000:] + combined.stderr[-5000:]
    with_model = combined.stdout.strip().splitlines()[-1]
    yield Images(reference, alone_id, with_model)
    keep_layers(with_model)
    docker("rmi", with_model, reference)


def keep_layers(image: str) -> None:
    """The session's image names are new each time (the model's name is): a stable tag keeps the
    model's requirements layer for the next session, and the previous session's image goes."""
    previous = docker("image", "inspect", "--format", "{{.Id}}", CACHE_TAG).stdout.decode().strip()
    docker("tag", image, CACHE_TAG)
    if previous and previous != image_id(CACHE_TAG):
        docker("rmi", previous)


def test_labels_name_the_run_and_the_version_the_alias_resolved_to(images, churn_model, mlflow_server):
    assert images.with_model == (
        f"preprocessing-{churn_model.name}-v{churn_model.version}-model-{churn_model.version}:latest"
    )
    labels = config(images.with_model)["Labels"]
    assert labels["io.mlflow.run_id"] == churn_model.run_id
    assert labels["io.mlflow.tracking_uri"] == mlflow_server.url
    assert labels["io.mlflow.served_model.name"] == churn_model.name
    assert labels["io.mlflow.served_model.version"] == churn_model.version  # not "champion"
    assert labels["io.mlflow.served_model.source"] == churn_model.uri
    assert labels["io.mlflow.served_model.uri"] == f"models:/{churn_model.name}/{churn_model.version}"
    assert labels["io.mlflow.served_model.flavor"] == "sklearn"
    assert labels["io.mlflow.served_model.run_id"] == churn_model.run_id
    assert "MODEL_URI=/opt/model" in config(images.with_model)["Env"]


def registry_predictions(churn_model, mlflow_server) -> list:
    """What the registry's model predicts on the churn records, preprocessed on the host."""
    import mlflow
    import pandas as pd

    from mlprep.runtime.core import Preprocessor, records_of

    outputs, raised = Preprocessor.load(churn_model.preprocessing).apply(churn_model.records)
    assert not raised
    rows = [row for output in outputs for row in records_of(output)]
    mlflow.set_tracking_uri(mlflow_server.url)
    return mlflow.pyfunc.load_model(churn_model.uri).predict(pd.DataFrame(rows)).tolist()


def test_the_container_predicts_as_the_registry_model_without_a_tracking_server(images, churn_model, mlflow_server):
    """No MLFLOW_TRACKING_URI in the container: the model is loaded from its folder in the image."""
    expected = registry_predictions(churn_model, mlflow_server)

    ran = docker(
        "run",
        "-i",
        "--rm",
        "--network",
        "host",
        images.with_model,
        "python",
        "-c",
        IN_CONTAINER,
        stdin=json.dumps(churn_model.records, default=str).encode(),
    )
    assert ran.returncode == 0, ran.stderr.decode()[-3000:]
    answer = json.loads(ran.stdout)
    assert answer["failures"] == {} and answer["model_error"] is None
    assert [p for per_record in answer["predictions"] for p in per_record] == expected
    assert len(expected) == len(churn_model.records)
    state = answer["state"]
    assert (state["uri"], state["name"], state["version"]) == ("/opt/model", churn_model.name, churn_model.version)
    assert state["flavor"] == "sklearn" and "alias" not in state


def test_the_image_serves_predict_on_its_own(images, churn_model, mlflow_server):
    """``docker run -d IMAGE``: the REST API with the image's model, ``/predict`` on raw records."""
    import httpx

    from mlprep import services

    expected = registry_predictions(churn_model, mlflow_server)
    port = services.free_port()
    started = docker(
        "run",
        "-d",
        "--rm",
        "--network",
        "host",
        "-e",
        f"API_PORT={port}",
        "-e",
        "API_HOST=127.0.0.1",
        images.with_model,
    )
    assert started.returncode == 0, started.stderr.decode()
    container = started.stdout.decode().strip()
    try:
        services.wait_http(f"http://127.0.0.1:{port}/health", timeout=180)
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()
        assert (health["model"]["uri"], health["model"]["version"]) == ("/opt/model", churn_model.version)
        body = json.dumps({"data": churn_model.records[:50]}, default=str)
        answer = httpx.post(f"http://127.0.0.1:{port}/predict", content=body, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == expected[:50] and answer.json()["errors"] == []
    finally:
        logs = docker("logs", container).stderr.decode()[-2000:]
        docker("rm", "-f", container)
    assert "Traceback" not in logs, logs


def test_the_preprocessing_only_image_is_left_as_it_was(images):
    assert image_id(images.alone) == images.alone_id
    assert image_id(images.with_model) != images.alone_id
    settings = config(images.alone)
    assert not any(key.startswith("io.mlflow.served_model.") for key in settings["Labels"])
    assert not any(entry.startswith("MODEL_URI=") for entry in settings["Env"])
    probe = docker(
        "run",
        "--rm",
        "--network",
        "host",
        images.alone,
        "python",
        "-c",
        "import importlib.util as u, os; print(u.find_spec('mlflow') is None, os.path.exists('/opt/model'))",
    )
    assert probe.stdout.decode().strip() == "True False", probe.stderr.decode()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--with-model", "models:/churn@champion", "--dockerfile", "README.md"], b"drop --dockerfile or --with-model"),
        (["--with-model", "s3://bucket/model"], b"invalid model source 's3://bucket/model'"),
    ],
)
def test_refused_before_anything_is_fetched(extra, expected):
    """No tracking server, no engine needed: the arguments are checked first."""
    refused = run_cli("build", "0123456789abcdef0123456789abcdef", *extra, cwd=ROOT, timeout=60)
    assert refused.returncode == 2, refused.stderr
    assert expected in refused.stderr
