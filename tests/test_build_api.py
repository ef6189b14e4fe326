"""The build API against real parts: uvicorn, a sqlite database, MLflow, Docker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest
from conftest import ROOT, FakeTracking, ProcessServer, free_port

from mlprep.build.api.webhooks import sign

TOKEN = "t0ken-for-tests"
SECRET = "webhook-secret-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def start_api(tmp_path, mlflow_server, base_image, **env: str) -> ProcessServer:
    port = free_port()
    settings = {
        "BUILD_API_HOST": "127.0.0.1",
        "BUILD_API_PORT": str(port),
        "BUILD_API_DATABASE_URL": f"sqlite:///{tmp_path}/builds.db",
        "BUILD_API_TOKEN": TOKEN,
        "MLFLOW_WEBHOOK_SECRET": SECRET,
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "MLPREP_BASE_IMAGE": base_image,
        **env,
    }
    return ProcessServer(
        [sys.executable, "-m", "build_scripts.api"], settings, port, tmp_path / f"api-{port}.log", cwd=ROOT
    )


@pytest.fixture(scope="module")
def api(tmp_path_factory, mlflow_server, base_image):
    server = start_api(tmp_path_factory.mktemp("buildapi"), mlflow_server, base_image)
    yield server
    server.stop()


def wait_for(api, build_id: str, states=("success", "failed", "cancelled"), timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = api.client.get(f"/builds/{build_id}", headers=AUTH).json()
        if record["status"] in states:
            return record
        time.sleep(0.3)
    pytest.fail(f"build {build_id} still {record['status']} after {timeout} s:\n{record.get('log', '')[-2000:]}")


def docker_image_exists(reference: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", reference], capture_output=True, check=False).returncode == 0


def test_info_health_and_docs(api):
    info = api.client.get("/").json()
    assert info["links"]["docs"] == "/docs"
    health = api.client.get("/health").json()
    assert health["docker"]["ok"] and health["mlflow"]["ok"] and health["database"]["ok"]
    assert health["status"] == "ok"
    assert api.client.get("/ready").json()["ready"] is True  # Kubernetes' readinessProbe
    assert "swagger" in api.client.get("/docs").text.lower()


def test_mutations_and_build_records_need_the_token(api):
    body = {"run_id": "a" * 32}
    assert api.client.post("/build", json=body).status_code == 401
    assert api.client.post("/build", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert api.client.delete("/builds/nope").status_code == 401
    assert api.client.post("/webhooks/dispatch", json={}).status_code == 401
    assert api.client.get("/builds").status_code == 401  # build records (errors, logs) are not public
    assert api.client.get("/builds/nope").status_code == 401
    assert api.client.get("/builds", headers=AUTH).status_code == 200


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("run_id", "../etc", "invalid run id"),
        ("image_name", "Bad Name", "invalid image name"),
        ("tag", "-x", "invalid tag"),
        ("preprocessing_path", "../../x.py", "without '..'"),
        ("preprocessing_path", "/abs/x.py", "must be relative"),
        ("dockerfile", "../../etc/passwd", "unknown Dockerfile"),
        ("python_version", "three", "invalid Python version"),
        ("base_image", "x y", "invalid image name"),
        ("model_source", "s3://bucket/../model", "invalid model source"),
        ("unexpected", 1, "Extra inputs"),
    ],
)
def test_every_invalid_field_gets_a_422_naming_it(api, field, value, words):
    body = {"run_id": "a" * 32, field: value}
    response = api.client.post("/build", json=body, headers=AUTH)
    assert response.status_code == 422
    problems = response.json()["detail"]
    assert any(p["loc"][-1] == field and words in p["msg"] for p in problems), problems


def test_build_runs_lists_and_keeps_its_log(api, example_run):
    response = api.client.post("/build", json={"run_id": example_run, "tag": "api"}, headers=AUTH)
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status"] == "pending" and accepted["build_id"]
    again = api.client.post("/build", json={"run_id": example_run, "tag": "api"}, headers=AUTH).json()
    assert again["build_id"] == accepted["build_id"]  # no second build of the same run and tag
    assert "already" in again["message"]
    record = wait_for(api, accepted["build_id"])
    assert record["status"] == "success", record["error"]
    assert record["image"] == "preprocessing-testmodel-v1:api"
    assert record["started_at"] and record["finished_at"] and record["seconds"] > 0
    assert "Step 1/" in record["log"]
    assert docker_image_exists("preprocessing-testmodel-v1:api")
    tail = api.client.get(f"/builds/{accepted['build_id']}", params={"tail": 2}, headers=AUTH).json()["log"]
    assert len(tail.splitlines()) == 2
    listed = api.client.get("/builds", params={"status": "success"}, headers=AUTH).json()
    assert accepted["build_id"] in [b["build_id"] for b in listed]
    assert api.client.get("/builds", params={"status": "bogus"}, headers=AUTH).status_code == 422


def test_sync_build_answers_when_done_and_failures_say_why(api):
    response = api.client.post("/build/sync", json={"run_id": "f" * 32}, headers=AUTH)
    assert response.status_code == 200
    record = response.json()
    assert record["status"] == "failed"
    assert "not found on the tracking server" in record["error"]


def test_cancel_a_running_build(api, example_run):
    tag = f"cancel-{uuid.uuid4().hex[:6]}"
    build_id = api.client.post(
        "/build", json={"run_id": example_run, "tag": tag, "no_cache": True}, headers=AUTH
    ).json()["build_id"]
    deadline = time.monotonic() + 120
    while "Step 3/" not in api.client.get(f"/builds/{build_id}", headers=AUTH).json().get("log", ""):
        assert time.monotonic() < deadline, "the build never reached docker build"
        time.sleep(0.2)
    answer = api.client.delete(f"/builds/{build_id}", headers=AUTH).json()
    assert answer == {"build_id": build_id, "cancelled": True, "deleted": True}
    assert api.client.get(f"/builds/{build_id}", headers=AUTH).status_code == 404
    assert not docker_image_exists(f"preprocessing-testmodel-v1:{tag}")


def test_forged_unsigned_stale_and_replayed_webhooks_are_refused(api):
    before = len(api.client.get("/builds", headers=AUTH).json())
    event = {
        "entity": "model_version",
        "action": "created",
        "timestamp": "2026-01-01T00:00:00Z",
        "data": {
            "name": "testmodel",
            "version": "99",
            "source": "models:/testmodel/99",
            "run_id": "a" * 32,
            "tags": {},
            "description": None,
        },
    }
    body = json.dumps(event).encode()

    def post(secret: str | None, timestamp: int, delivery: str, payload: bytes = body):
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers.update(
                {
                    "X-MLflow-Signature": sign(secret, delivery, str(timestamp), payload),
                    "X-MLflow-Timestamp": str(timestamp),
                    "X-MLflow-Delivery-Id": delivery,
                }
            )
        return api.client.post("/webhooks/mlflow", content=payload, headers=headers)

    assert post(None, int(time.time()), "d1").status_code == 401  # unsigned
    forged = post("not-the-secret", int(time.time()), "d2")
    assert forged.status_code == 401 and "signature does not match" in forged.json()["detail"]
    stale = post(SECRET, int(time.time()) - 3600, "d3")
    assert stale.status_code == 401 and "stale" in stale.json()["detail"]
    tampered = {
        "X-MLflow-Signature": sign(SECRET, "d4", str(int(time.time())), body),
        "X-MLflow-Timestamp": str(int(time.time())),
        "X-MLflow-Delivery-Id": "d4",
    }
    assert api.client.post("/webhooks/mlflow", content=body.replace(b"99", b"98"), headers=tampered).status_code == 401
    ignored = json.dumps({"entity": "registered_model", "action": "created", "data": {"name": "x"}}).encode()
    delivery = uuid.uuid4().hex
    first = post(SECRET, int(time.time()), delivery, ignored)
    assert first.status_code == 200 and first.json()["status"] == "ignored"
    replay = post(SECRET, int(time.time()), delivery, ignored)
    assert replay.status_code == 409
    assert len(api.client.get("/builds", headers=AUTH).json()) == before  # nothing was built


def test_dispatch_relay_needs_the_token_and_checks_the_payload(api):
    payload = {
        "ref": "main",
        "entity": "model_version",
        "action": "created",
        "data": {"name": "testmodel", "version": "5", "source": "models:/testmodel/5", "tags": {}, "description": None},
    }
    assert api.client.post("/webhooks/dispatch", json=payload).status_code == 401
    no_run = api.client.post("/webhooks/dispatch", json=payload, headers=AUTH)
    assert no_run.status_code == 422 and "MLflow knows none" in no_run.json()["detail"]
    other = {"entity": "model_version", "action": "deleted", "data": {}}
    assert api.client.post("/webhooks/dispatch", json=other, headers=AUTH).json()["status"] == "ignored"


def test_mlflow_delivers_model_version_created_and_both_images_get_built(api, mlflow_server, example_run):
    """A webhook registered through MLflow's client: registering a version builds both images.

    The version registers a logged model (models:/m-...), for which MLflow 3 sends run_id null: the
    API finds the run through MLflow.
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.url)
    client.create_webhook(
        name=f"build-{uuid.uuid4().hex[:6]}",
        url=f"{api.url}/webhooks/mlflow",
        events=["model_version.created"],
        secret=SECRET,
    )
    import mlflow

    time.sleep(2)  # MLflow caches the webhooks of an event for MLFLOW_WEBHOOK_CACHE_TTL (1 s here, 60 s by default)
    mlflow.set_tracking_uri(mlflow_server.url)
    first = client.get_model_version("testmodel", "1")
    version = mlflow.register_model(first.source, "testmodel").version
    deadline = time.monotonic() + 60
    build = None
    while build is None and time.monotonic() < deadline:
        builds = api.client.get("/builds", headers=AUTH).json()
        build = next((b for b in builds if b["image_name"] == f"preprocessing-testmodel-{version}"), None)
        time.sleep(0.3)
    server_log = (mlflow_server.folder / "server.log").read_text()[-3000:]
    assert build is not None, f"MLflow did not deliver the webhook:\n{api.log.read_text()[-3000:]}\n{server_log}"
    assert build["trigger"] == "mlflow-webhook" and build["run_id"] == example_run
    record = wait_for(api, build["build_id"])
    assert record["status"] == "success", record["error"]
    assert record["image"] == f"preprocessing-testmodel-{version}:latest"
    assert record["model_image"] == f"model-testmodel-{version}:latest"
    assert docker_image_exists(record["image"]) and docker_image_exists(record["model_image"])


def test_restart_mid_queue(tmp_path, mlflow_server, base_image, example_run):
    """Finished builds survive a restart; the interrupted one is marked; the queued one runs after."""
    api = start_api(tmp_path, mlflow_server, base_image, MAX_CONCURRENT_BUILDS="1")
    done = api.client.post("/build/sync", json={"run_id": example_run, "tag": "before-restart"}, headers=AUTH).json()
    assert done["status"] == "success"
    running = api.client.post(
        "/build", json={"run_id": example_run, "tag": "interrupted", "no_cache": True}, headers=AUTH
    ).json()["build_id"]
    queued = api.client.post("/build", json={"run_id": example_run, "tag": "queued"}, headers=AUTH).json()["build_id"]
    wait_for(api, running, states=("running",), timeout=60)
    assert api.client.get(f"/builds/{queued}", headers=AUTH).json()["status"] == "pending"
    api.stop(kill=True)
    restarted = start_api(tmp_path, mlflow_server, base_image, MAX_CONCURRENT_BUILDS="1")
    try:
        listed = {b["build_id"]: b for b in restarted.client.get("/builds", headers=AUTH).json()}
        assert listed[done["build_id"]]["status"] == "success"
        interrupted = listed[running]
        assert interrupted["status"] == "failed" and "interrupted" in interrupted["error"]
        assert wait_for(restarted, queued)["status"] == "success"
    finally:
        restarted.stop()


def test_auth_off_lets_mutations_through(tmp_path, mlflow_server, base_image):
    open_api = start_api(tmp_path, mlflow_server, base_image, BUILD_API_TOKEN="")
    try:
        assert open_api.client.post("/build", json={"run_id": "e" * 32}).status_code == 202
        assert open_api.client.post("/webhooks/dispatch", json={}).status_code == 503  # relay needs a token
    finally:
        open_api.stop()


def test_fuzz_from_the_openapi_schema_finds_no_server_error(api, tmp_path):
    """schemathesis generates requests from /openapi.json: no answer may be a 5xx."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{api.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "15",
            "-H",
            f"Authorization: Bearer {TOKEN}",
            "--request-timeout",
            "60",
            "--exclude-path",
            "/build/sync",
        ],
        cwd=tmp_path,  # its cache stays out of the repository
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-5000:]


def offline_api(tmp_path, tracking_uri: str, **env: str) -> ProcessServer:
    """The build API with a fake tracking server: what it refuses and records is tested here."""
    port = free_port()
    settings = {
        "BUILD_API_HOST": "127.0.0.1",
        "BUILD_API_PORT": str(port),
        "BUILD_API_DATABASE_URL": f"sqlite:///{tmp_path}/builds-{port}.db",
        "BUILD_API_TOKEN": TOKEN,
        "MLFLOW_WEBHOOK_SECRET": SECRET,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        **env,
    }
    return ProcessServer(
        [sys.executable, "-m", "build_scripts.api"], settings, port, tmp_path / f"api-{port}.log", cwd=ROOT
    )


@pytest.fixture
def stuck_api(tmp_path, base_image):
    """A build API whose fetches hang for a minute (a slow tracking server)."""
    tracking = FakeTracking(delay=60)
    api = offline_api(tmp_path, f"http://127.0.0.1:{tracking.port}")
    yield api
    api.stop(kill=True)
    tracking.stop()


def test_concurrent_identical_requests_make_one_build(stuck_api):
    import asyncio

    import httpx

    body = {"run_id": "c" * 32, "tag": "same"}

    async def burst() -> list[httpx.Response]:
        clients = [httpx.AsyncClient(base_url=stuck_api.url, timeout=60) for _ in range(20)]
        for client in clients:  # connections open first, so the 20 requests arrive together
            await client.get("/health")
        try:
            return await asyncio.gather(*(c.post("/build", json=body, headers=AUTH) for c in clients))
        finally:
            await asyncio.gather(*(c.aclose() for c in clients))

    answers = asyncio.run(burst())
    assert all(a.status_code == 202 for a in answers), [a.text for a in answers]
    assert len({a.json()["build_id"] for a in answers}) == 1
    assert len(stuck_api.client.get("/builds", headers=AUTH).json()) == 1


def test_delete_answers_at_once_while_a_fetch_runs(stuck_api):
    build_id = stuck_api.client.post("/build", json={"run_id": "d" * 32}, headers=AUTH).json()["build_id"]
    wait_for(stuck_api, build_id, states=("running",), timeout=30)
    begin = time.monotonic()
    answer = stuck_api.client.delete(f"/builds/{build_id}", headers=AUTH)
    assert answer.status_code == 200 and answer.json()["cancelled"] is True
    assert time.monotonic() - begin < 10  # the fetch still hangs for a minute: DELETE does not wait for it
    assert stuck_api.client.get(f"/builds/{build_id}", headers=AUTH).status_code == 404
    again = stuck_api.client.post("/build", json={"run_id": "d" * 32}, headers=AUTH).json()
    assert again["build_id"] != build_id  # the run, image and tag are free again


def test_stored_errors_and_logs_hold_no_credentials(tmp_path, base_image):
    tracking = FakeTracking()
    api = offline_api(tmp_path, f"http://alice:s3cret-pw@127.0.0.1:{tracking.port}")
    try:
        record = api.client.post("/build/sync", json={"run_id": "e" * 32}, headers=AUTH).json()
        assert record["status"] == "failed"
        assert "***@127.0.0.1" in record["error"]  # the URL is still shown, without its password
        stored = api.client.get(f"/builds/{record['build_id']}", headers=AUTH).json()
        health = api.client.get("/health").text
        for text in (record["error"], stored["error"], stored["log"], health, api.log.read_text()):
            assert "s3cret-pw" not in text and "alice" not in text
        assert api.client.get(f"/builds/{record['build_id']}").status_code == 401
    finally:
        api.stop()
        tracking.stop()


def signed(payload: bytes, timestamp: str, delivery: str | None = None) -> dict[str, bytes]:
    """MLflow's headers for ``payload``; values as bytes, so that any timestamp can be sent (latin-1)."""
    delivery = delivery or uuid.uuid4().hex
    return {
        "Content-Type": b"application/json",
        "X-MLflow-Signature": sign(SECRET, delivery, timestamp, payload).encode(),
        "X-MLflow-Timestamp": timestamp.encode("latin-1"),
        "X-MLflow-Delivery-Id": delivery.encode(),
    }


@pytest.fixture
def idle_api(tmp_path):
    tracking = FakeTracking()
    api = offline_api(tmp_path, f"http://127.0.0.1:{tracking.port}")
    yield api
    api.stop()
    tracking.stop()


@pytest.mark.parametrize(
    ("name", "version", "words"),
    [("---", "1", "holds no letter or digit"), ("x" * 100_000, "1", "invalid image name"), ("m", "--", "holds no")],
)
def test_webhook_builds_get_the_same_validation_as_requests(idle_api, name, version, words):
    event = {
        "entity": "model_version",
        "action": "created",
        "data": {"name": name, "version": version, "source": "", "run_id": "a" * 32},
    }
    body = json.dumps(event).encode()
    answer = idle_api.client.post("/webhooks/mlflow", content=body, headers=signed(body, str(int(time.time()))))
    assert answer.status_code in (413, 422), answer.text
    if answer.status_code == 422:
        assert words in answer.json()["detail"]
    assert idle_api.client.get("/builds", headers=AUTH).json() == []


@pytest.mark.parametrize("timestamp", ["\u00b2", "9" * 5000, "1e9", "1.5", "-5"])
def test_malformed_webhook_timestamps_are_refused_not_crashed(idle_api, timestamp):
    body = b'{"entity": "model_version", "action": "deleted", "data": {}}'
    answer = idle_api.client.post("/webhooks/mlflow", content=body, headers=signed(body, timestamp))
    assert answer.status_code == 401, answer.text


@pytest.mark.parametrize("field", ["tag", "python_version", "image_name", "base_image", "run_id"])
def test_values_with_a_trailing_newline_are_refused(idle_api, field):
    good = {"tag": "v1", "python_version": "3.11", "image_name": "prep-x", "base_image": "base:1", "run_id": "a" * 32}
    body = {"run_id": "a" * 32, field: good[field] + "\n"}
    answer = idle_api.client.post("/build", json=body, headers=AUTH)
    assert answer.status_code == 422, answer.text
    assert any(p["loc"][-1] == field for p in answer.json()["detail"])


def test_bodies_and_fields_have_size_limits(idle_api):
    huge = idle_api.client.post(
        "/build", json={"run_id": "a" * 32, "preprocessing_path": "a/" * 10_000_000}, headers=AUTH
    )
    assert huge.status_code == 413 and "request body over" in huge.json()["detail"]

    def chunks():
        for _ in range(200):
            yield b" " * 1024

    streamed = idle_api.client.post("/webhooks/dispatch", content=chunks(), headers=AUTH)
    assert streamed.status_code == 413
    long_path = idle_api.client.post(
        "/build", json={"run_id": "a" * 32, "preprocessing_path": "a/" * 1000 + "p.py"}, headers=AUTH
    )
    assert long_path.status_code == 422
    assert idle_api.client.get("/builds", headers=AUTH).json() == []
