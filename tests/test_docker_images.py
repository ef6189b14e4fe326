"""From an MLflow run to Docker images, with a real engine, a real MLflow server and real containers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import fastavro
import httpx
import pytest
from conftest import ROOT, free_port

from mlprep import services
from mlprep.errors import MlprepError

IMAGE = "preprocessing-testmodel-v1"


def docker(*args: str, stdin: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["docker", *args], input=stdin, capture_output=True, timeout=timeout, check=False)


def run_script(name: str, mlflow_server, *args: str) -> subprocess.CompletedProcess[str]:
    """One of build_scripts/ as users run it, against the test MLflow server."""
    return subprocess.run(
        [sys.executable, str(ROOT / "build_scripts" / name), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **mlflow_server.env()},
        timeout=900,
        check=False,
    )


def wait_for_container(url: str, container: str) -> None:
    try:
        services.wait_http(url, timeout=60)
    except MlprepError:
        pytest.fail(docker("logs", container).stderr.decode()[-3000:])


def test_stdin_jsonl(built_image):
    result = docker(
        "run", "-i", "--rm", "--network", "host", built_image, stdin=b'{"test": "data"}\n{"Contract": "Two Year"}\n'
    )
    assert result.returncode == 0, result.stderr
    assert [json.loads(x) for x in result.stdout.splitlines()] == [
        {"test": "data", "preprocessed": True},
        {"contract": "two_year", "preprocessed": True},
    ]


def test_json_and_avro_files_mounted_in(built_image, tmp_path):
    (tmp_path / "input.json").write_text('[{"Payment_Method": "Credit Card"}, {"drop": true}]')
    schema = fastavro.parse_schema(
        {
            "type": "record",
            "name": "R",
            "fields": [{"name": "Tenure_Months", "type": "int"}, {"name": "Monthly_Charges", "type": "double"}],
        }
    )
    with open(tmp_path / "input.avro", "wb") as handle:
        fastavro.writer(handle, schema, [{"Tenure_Months": 3, "Monthly_Charges": 10.0}])
    os.chmod(tmp_path, 0o755)
    for name in ("input.json", "input.avro"):
        os.chmod(tmp_path / name, 0o644)
    mount = ["-v", f"{tmp_path}:/data:ro"]
    from_json = docker("run", "-i", "--rm", "--network", "host", *mount, built_image, "input.json")
    assert from_json.returncode == 0, from_json.stderr
    assert [json.loads(x) for x in from_json.stdout.splitlines()] == [
        {"payment_method": "credit_card", "preprocessed": True}
    ]
    from_avro = docker("run", "-i", "--rm", "--network", "host", *mount, built_image, "input.avro")
    assert from_avro.returncode == 0, from_avro.stderr
    assert json.loads(from_avro.stdout)["total_charges_estimate"] == 30.0


def test_explicit_command_and_forced_mode(built_image):
    result = docker(
        "run", "-i", "--rm", "--network", "host", built_image, "python", "/app/runner/runner.py", stdin=b'{"a": 1}'
    )
    assert json.loads(result.stdout) == {"a": 1, "preprocessed": True}
    forced = docker("run", "-i", "--rm", "--network", "host", "-e", "MODE=batch", built_image, stdin=b'{"b": 2}')
    assert json.loads(forced.stdout) == {"b": 2, "preprocessed": True}
    bad = docker("run", "-i", "--rm", "--network", "host", "-e", "MODE=nope", built_image, stdin=b"{}")
    assert bad.returncode == 2 and b"MODE must be" in bad.stderr


def test_rest_api_in_the_container(built_image, example_run):
    port = free_port()
    started = docker("run", "-d", "--network", "host", "-e", f"API_PORT={port}", built_image)
    container = started.stdout.decode().strip()
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_container(f"{url}/health", container)
        health = httpx.get(f"{url}/health").json()
        assert health["run_id"] == example_run
        assert (health["model_name"], health["model_version"]) == ("testmodel", "v1")
        one = httpx.post(f"{url}/preprocess", json={"data": {"test": "data"}}).json()
        assert one == {"result": {"test": "data", "preprocessed": True}}
        many = httpx.post(f"{url}/preprocess/batch", json={"data": [{"a": 1}, {"drop": True}]}).json()
        assert many == {"results": [{"a": 1, "preprocessed": True}, None], "errors": []}
        assert httpx.get(f"{url}/docs").status_code == 200
    finally:
        docker("rm", "-f", container)


def test_image_metadata_non_root_runtime_only_and_locked(built_image, example_run, mlflow_server):
    labels = json.loads(docker("inspect", "--format", "{{json .Config.Labels}}", built_image).stdout)
    assert labels["io.mlflow.run_id"] == example_run
    assert labels["io.mlflow.model_name"] == "testmodel"
    assert labels["io.mlflow.tracking_uri"] == mlflow_server.url
    config = json.loads(docker("inspect", "--format", "{{json .Config}}", built_image).stdout)
    assert config["User"] == "10001:10001"
    assert config["Healthcheck"]["Test"][-1] == "mlprep.healthcheck"
    probe = docker(
        "run",
        "--rm",
        "--network",
        "host",
        built_image,
        "python",
        "-c",
        "import importlib.util as u; print(u.find_spec('mlflow') is None, u.find_spec('mlprep.build') is None)",
    )
    assert probe.stdout.strip() == b"True True"  # no MLflow, nothing of the build side
    frozen = docker("run", "--rm", "--network", "host", built_image, "python", "-m", "pip", "freeze").stdout.decode()
    pins = (line.split("==") for line in frozen.split() if "==" in line)
    installed = {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pins}
    lock = (ROOT / "src/mlprep/build/docker/runtime.lock").read_text()
    locked = dict(re.findall(r"^([a-z0-9_.-]+)==([^ \\]+)", lock, re.MULTILINE))
    for name, version in locked.items():  # the runtime's dependencies are exactly the locked versions
        assert installed.get(name) == version, (name, installed.get(name), version)
    legacy = docker(
        "run", "--rm", "--network", "host", "-i", built_image, "python", "/app/runner/runner.py", stdin=b"{}"
    )
    assert legacy.returncode == 0, legacy.stderr


def test_code_layout_with_sibling_modules_and_requirements(mlflow_server, example_run, base_image):
    result = run_script(
        "build_image.py",
        mlflow_server,
        example_run,
        "auto",
        "--tag",
        "code",
        "--preprocessing-path",
        "code/preprocessing.py",
        "--base-image",
        base_image,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = docker("run", "-i", "--rm", "--network", "host", f"{IMAGE}:code", stdin=b'{"Signup_Date": "2021-03-04"}')
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {"signup_date": "2021-03-04", "signup_year": 2021, "layout": "code"}


def test_build_errors_name_the_problem(mlflow_server, base_image):
    env = {**os.environ, **mlflow_server.env()}
    bad_name = subprocess.run(
        [sys.executable, "-m", "mlprep", "build", "a" * 32, "Bad Name"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert bad_name.returncode == 2 and "invalid image name 'Bad Name'" in bad_name.stderr
    unknown = subprocess.run(
        [sys.executable, "-m", "mlprep", "build", "b" * 32, "--base-image", base_image],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert unknown.returncode == 2 and "not found on the tracking server" in unknown.stderr


def test_build_help_shows_every_option_with_examples():
    result = subprocess.run(
        [sys.executable, str(ROOT / "build_scripts" / "build_image.py"), "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    for option in ("--tag", "--preprocessing-path", "--dockerfile", "--python-version", "--base-image", "examples:"):
        assert option in result.stdout


def test_model_image_answers_invocations(mlflow_server, example_run, base_image):
    result = run_script(
        "build_model_image.py", mlflow_server, "models:/testmodel/1", "model-testmodel-1", "--base-image", base_image
    )
    assert result.returncode == 0, result.stderr[-3000:]
    port = free_port()
    container = (
        docker("run", "-d", "--network", "host", "-e", f"MODEL_PORT={port}", "model-testmodel-1:latest")
        .stdout.decode()
        .strip()
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_container(f"{url}/ping", container)
        rows = [
            {"tenure_months": 1.0, "monthly_charges": 115.0, "support_calls": 6.0},
            {"tenure_months": 70.0, "monthly_charges": 20.0, "support_calls": 0.0},
        ]
        answer = httpx.post(f"{url}/invocations", json={"dataframe_records": rows}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": [1, 0]}
    finally:
        docker("rm", "-f", container)


def test_two_builds_without_cache_hold_the_same_packages(mlflow_server, example_run, base_image):
    """The runner's dependencies come from the hashed lock: rebuilding from scratch changes nothing."""
    frozen = []
    for tag in ("fresh-a", "fresh-b"):
        result = run_script(
            "build_image.py", mlflow_server, example_run, "auto", "--tag", tag, "--no-cache", "--base-image", base_image
        )
        assert result.returncode == 0, result.stderr[-3000:]
        listing = docker("run", "--rm", f"{IMAGE}:{tag}", "python", "-m", "pip", "freeze", "--all")
        assert listing.returncode == 0, listing.stderr
        frozen.append(sorted(listing.stdout.decode().split()))
    assert frozen[0] == frozen[1]
    assert any(line.startswith("fastapi==") for line in frozen[0])
