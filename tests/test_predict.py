"""One inference service, REST side: ``mlprep serve --model`` answers /predict and MLflow's /invocations
with the run's preprocessing then the registered model, in one process, against a real MLflow server,
compared with ``mlflow models serve`` of the same version; the alias reload under load."""

from __future__ import annotations

import shutil
import threading
import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest
from conftest import MLPREP, ProcessServer, free_port, run_cli, write_files

from mlprep import services

# The churn features, plus a few ways for a record to go wrong or fan out (fields the churn code ignores).
WRAPPER = """
from churn_features import pre_processing as churn


def pre_processing(record):
    if record.get("explode"):
        raise ValueError("explode was asked for")
    if record.get("drop"):
        return None
    features = churn(record)
    if record.get("poison"):
        features["tenure_months"] = "not a number"  # the model cannot take it
    if record.get("twice"):
        return [features, dict(features, support_calls=features["support_calls"] + 7)]
    return features
"""


def _post(client: httpx.Client, path: str, body: object) -> httpx.Response:
    return client.post(path, content=orjson.dumps(body), headers={"Content-Type": "application/json"})


def _preprocessing(churn_model, folder: Path) -> Path:
    shutil.copytree(churn_model.preprocessing, folder)
    (folder / "preprocessing.py").rename(folder / "churn_features.py")
    return write_files(folder, {"preprocessing.py": WRAPPER})


def _mlprep(preprocessing: Path, model: str, env: dict[str, str], log: Path, **more: str) -> ProcessServer:
    port = free_port()
    full_env = {"API_HOST": "127.0.0.1", "API_PORT": str(port), "PREPROCESSING_DIR": str(preprocessing), **env}
    return ProcessServer([*MLPREP, "serve", "--model", model], {**full_env, **more}, port, log, timeout=180)


@pytest.fixture(scope="module")
def served(churn_model, mlflow_server, tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict")
    server = _mlprep(_preprocessing(churn_model, folder / "code"), churn_model.uri, mlflow_server.env(), folder / "log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def reference(churn_model, mlflow_server, tmp_path_factory):
    """``mlflow models serve`` of the same version, and what it predicts for the preprocessed records."""
    log = tmp_path_factory.mktemp("mlflow-serve") / "log"
    port = free_port()
    process = services.start_model_server(churn_model.uri, port, mlflow_server.env(), log)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                if client.get("/ping").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        yield client
    finally:
        client.close()
        services.stop_group(process)


@pytest.fixture(scope="module")
def expected(served, reference, churn_model) -> list:
    """mlflow models serve's predictions for the records as /preprocess/batch preprocesses them."""
    preprocessed = _post(served.client, "/preprocess/batch", {"data": churn_model.records})
    assert preprocessed.status_code == 200 and preprocessed.json()["errors"] == []
    answer = _post(reference, "/invocations", {"dataframe_records": preprocessed.json()["results"]})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert len(predictions) == len(churn_model.records) and len(set(predictions)) > 1  # both classes
    return predictions


def test_predict_gives_what_mlflow_models_serve_gives(served, expected, churn_model):
    answer = _post(served.client, "/predict", {"data": churn_model.records})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body == {
        "predictions": expected,
        "errors": [],
        "model": {"name": churn_model.name, "version": churn_model.version},
    }
    one = _post(served.client, "/predict", {"data": churn_model.records[3]}).json()
    assert one["predictions"] == [expected[3]]


def test_two_api_workers_each_serve_the_model(expected, churn_model, mlflow_server, tmp_path):
    """API_WORKERS=2: uvicorn spawns both processes, each loads the model; whichever answers predicts
    the same, with the model named in /health (the preprocessing folder of the run, as fetched)."""
    env = {**mlflow_server.env(), "API_WORKERS": "2"}
    server = _mlprep(churn_model.preprocessing, churn_model.uri, env, tmp_path / "log")
    try:
        for _ in range(4):
            answer = _post(server.client, "/predict", {"data": churn_model.records})
            assert answer.status_code == 200 and answer.json()["predictions"] == expected
        assert server.client.get("/health").json()["model"]["version"] == churn_model.version
    finally:
        server.stop()


def test_invocations_takes_mlflows_four_formats(served, expected, churn_model):
    records = churn_model.records
    columns = list(records[0])
    bodies = {
        "dataframe_records": {"dataframe_records": records},
        "dataframe_split": {
            "dataframe_split": {
                "columns": columns,
                "data": [[record[name] for name in columns] for record in records],
                "index": list(range(len(records))),
            }
        },
        "instances": {"instances": records},
        "inputs (records)": {"inputs": records},
        "inputs (columns)": {"inputs": {name: [record[name] for record in records] for name in columns}},
    }
    for name, body in bodies.items():
        answer = _post(served.client, "/invocations", body)
        assert answer.status_code == 200, (name, answer.text)
        assert answer.json() == {"predictions": expected}, name
    assert served.client.get("/ping").status_code == 200


def test_invocations_refuses_like_mlflow(served, churn_model):
    two = [churn_model.records[0], {**churn_model.records[1], "explode": True}]
    answer = _post(served.client, "/invocations", {"dataframe_records": two})
    assert answer.status_code == 400
    body = answer.json()
    assert body["error_code"] == "BAD_REQUEST"
    assert "record 1: preprocess failed: pre_processing raised ValueError: explode was asked for" in body["message"]
    for wrong in ({"data": two}, {"instances": two, "inputs": two}, [1, 2]):
        answer = _post(served.client, "/invocations", wrong)
        assert answer.status_code == 400 and "exactly one of the input fields" in answer.json()["message"]
    poisoned = _post(served.client, "/invocations", {"inputs": [{**churn_model.records[0], "poison": 1}]})
    assert poisoned.status_code == 400
    assert poisoned.json()["error_code"] == "BAD_REQUEST"
    assert f"model {churn_model.name} version {churn_model.version}: the model raised" in poisoned.json()["message"]


def test_predict_reports_each_record(served, expected, churn_model):
    records = churn_model.records
    batch = [
        records[0],
        5,
        {**records[2], "explode": True},
        records[3],
        {**records[4], "drop": True},
        {**records[5], "twice": True},
    ]
    answer = _post(served.client, "/predict", {"data": batch})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    predictions = body["predictions"]
    assert predictions[:5] == [expected[0], None, None, expected[3], None]
    assert type(predictions[5]) is list and len(predictions[5]) == 2 and predictions[5][0] == expected[5]
    assert body["errors"] == [
        {"index": 1, "stage": "decode", "error": "record must be a JSON object, not a number"},
        {
            "index": 2,
            "stage": "preprocess",
            "error": body["errors"][1]["error"],
        },
    ]
    assert "pre_processing raised ValueError: explode was asked for" in body["errors"][1]["error"]


def test_a_model_failure_fails_the_batch_and_keeps_the_record_errors(served, churn_model):
    records = churn_model.records
    answer = _post(served.client, "/predict", {"data": [records[0], "x", {**records[1], "poison": True}]})
    assert answer.status_code == 422
    body = answer.json()
    assert body["stage"] == "model"
    assert body["model"] == {"name": churn_model.name, "version": churn_model.version}
    assert f"model {churn_model.name} version {churn_model.version}: the model raised" in body["error"]
    assert body["errors"] == [{"index": 1, "stage": "decode", "error": "record must be a JSON object, not a string"}]
    metrics = served.client.get("/metrics").text
    assert 'mlprep_record_errors_total{endpoint="/predict",stage="model"} 2.0' in metrics
    assert 'mlprep_requests_total{endpoint="/predict",status="422"}' in metrics
    assert 'mlprep_model_duration_seconds_count{endpoint="/predict"}' in metrics


def test_health_names_the_model(served, churn_model):
    health = served.client.get("/health").json()
    model = health["model"]
    assert model["uri"] == churn_model.uri
    assert model["version"] == churn_model.version
    assert model["run_id"] == churn_model.run_id
    assert model["flavor"] == "sklearn"
    assert served.client.get("/ready").status_code == 200
    paths = served.client.get("/openapi.json").json()["paths"]
    assert {"/predict", "/invocations", "/ping"} <= set(paths)
    assert "dataframe_split" in orjson.dumps(paths["/invocations"]).decode()


def test_a_missing_model_stops_serve(churn_model, mlflow_server):
    missing = f"models:/{churn_model.name}-missing@champion"
    result = run_cli(
        "serve", "-p", str(churn_model.preprocessing), "--model", missing, env=mlflow_server.env(), timeout=120
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert missing in result.stderr.decode()


def test_the_alias_moves_under_load(churn_model, mlflow_server, tmp_path):
    """v1 serves; champion moves to v2 while a client keeps sending: no failed request, the version switches
    once and for good; then to a v3 that cannot load: v2 keeps serving and /health shows v3 as failed."""
    import mlflow
    from mlflow import MlflowClient

    from churn import data, features, model, tracking

    mlflow.set_tracking_uri(mlflow_server.url)
    client = MlflowClient(mlflow_server.url)
    name = f"reload-{uuid.uuid4().hex[:6]}"
    source = client.get_model_version(churn_model.name, churn_model.version).source
    first = mlflow.register_model(source, name).version
    client.set_registered_model_alias(name, "champion", first)

    server = _mlprep(
        churn_model.preprocessing, f"models:/{name}@champion", mlflow_server.env(), tmp_path / "log", MODEL_RELOAD_S="1"
    )
    versions: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            while not stop.is_set():
                answer = _post(http, "/predict", {"data": churn_model.records[:5]})
                if answer.status_code != 200 or answer.json()["errors"]:
                    failures.append(answer.text)
                else:
                    versions.append(answer.json()["model"]["version"])

    sender = threading.Thread(target=send)
    try:
        sender.start()
        frame = data.generate(300, seed=3)
        x = features.transform_frame(frame.drop(columns=[data.TARGET]))
        forest = model.train(x, frame[data.TARGET], "random_forest", n_estimators=10)
        run = tracking.log_training_run(forest, x, None, {"model_type": "random_forest"}, name, name)
        second = tracking.register(run, name)
        client.set_registered_model_alias(name, "champion", second)
        assert _wait(lambda: server.client.get("/health").json()["model"]["version"] == second), server.log.read_text()
        time.sleep(1.5)  # requests on the new version too
        stop.set()
        sender.join(timeout=60)
        assert not failures, failures[:3]
        assert versions[0] == str(first) and versions[-1] == second
        switch = versions.index(second)
        assert set(versions[:switch]) == {str(first)} and set(versions[switch:]) == {second}

        broken = write_files(tmp_path / "broken", {"MLmodel": BROKEN_MLMODEL})
        with mlflow.start_run(experiment_id=client.get_run(run.run_id).info.experiment_id) as broken_run:
            mlflow.log_artifacts(str(broken), "model")
        third = client.create_model_version(
            name, f"{client.get_run(broken_run.info.run_id).info.artifact_uri}/model", broken_run.info.run_id
        ).version
        client.set_registered_model_alias(name, "champion", third)
        assert _wait(lambda: "failed" in server.client.get("/health").json()["model"]), server.log.read_text()
        state = server.client.get("/health").json()["model"]
        assert state["version"] == second and state["failed"]["version"] == str(third)
        answer = _post(server.client, "/predict", {"data": churn_model.records[:2]})
        assert answer.status_code == 200 and answer.json()["model"]["version"] == second
    finally:
        stop.set()
        if sender.is_alive():
            sender.join(timeout=60)
        server.stop()


BROKEN_MLMODEL = """
flavors:
  python_function:
    loader_module: mlflow.sklearn
    model_path: model.pkl
    python_version: 3.11.0
  sklearn:
    pickled_model: model.pkl
    serialization_format: cloudpickle
    sklearn_version: 1.5.0
"""


def _wait(condition, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_while_a_new_version_loads_the_old_one_serves_and_health_shows_both(churn_model, mlflow_server, monkeypatch):
    """The alias moved and the new version is still loading (held here): ``state()`` names the serving
    version and the one loading; predictions keep coming from the old one; then one switch."""
    import mlflow

    from mlprep.runtime.model import LoadedModel, ServedModel

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    mlflow.set_tracking_uri(mlflow_server.url)
    client = mlflow.MlflowClient()
    name = f"churn-slow-{uuid.uuid4().hex[:6]}"
    source = client.get_model_version(churn_model.name, churn_model.version).source
    first = mlflow.register_model(source, name).version
    client.set_registered_model_alias(name, "champion", first)
    release, loading = threading.Event(), threading.Event()

    def slow_loader(uri: str) -> LoadedModel:
        if not uri.endswith(f"/{first}") and not uri.endswith("@champion"):
            loading.set()
            assert release.wait(60)
        return LoadedModel.load(uri)

    served = ServedModel(f"models:/{name}@champion", loader=slow_loader)
    from mlprep.runtime.core import Preprocessor

    rows, _ = Preprocessor.load(churn_model.preprocessing).apply(churn_model.records[:5])
    before = served.predict(rows)
    second = mlflow.register_model(source, name).version
    client.set_registered_model_alias(name, "champion", second)
    switched: list[bool] = []
    checker = threading.Thread(target=lambda: switched.append(served.check()))
    checker.start()
    try:
        assert loading.wait(60)
        state = served.state()
        assert state["version"] == str(first) and state["loading"]["version"] == str(second)
        assert served.predict(rows) == before and served.current.info.version == str(first)
    finally:
        release.set()
        checker.join(60)
    assert switched == [True]
    state = served.state()
    assert state["version"] == str(second) and "loading" not in state and state["switches"] == 1
    assert served.predict(rows) == before  # the same model files under another version
