"""The workshop's Docker stack: the compose file with and without the dagster profile, its images
built on the local base image, and the worker image running a scheduled deployment by itself."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml
from conftest import ROOT, run_script
from infra import _apt_install, ensure_base_image, start_background
from test_prefect import REFERENCE, await_scheduled_run, completed_scheduled_ids

WORKSHOP_SERVICES = {"mlflow", "prefect-server", "prefect-worker"}
DAGSTER_SERVICES = {"dagster-webserver", "dagster-daemon"}


def compose_config(*profile: str, env: dict[str, str] | None = None) -> dict:
    if shutil.which("docker-compose") is None:
        _apt_install("docker-compose")
    flags = ["--profile", profile[0]] if profile else []
    result = subprocess.run(
        ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), *flags, "config"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def active(config: dict, profile: str | None) -> set[str]:
    """The services `up` starts: those without a profile, plus the given profile's."""
    return {name for name, service in config["services"].items() if profile in service.get("profiles", [None])}


def test_compose_parses_with_the_dagster_profile_off_and_on():
    default = compose_config()
    assert active(default, None) == WORKSHOP_SERVICES
    with_dagster = compose_config("dagster")
    assert active(with_dagster, "dagster") == DAGSTER_SERVICES
    services = with_dagster["services"]
    assert services["mlflow"]["ports"][0]["published"] in (5000, "5000")
    assert services["prefect-server"]["ports"][0]["published"] in (4200, "4200")
    assert services["dagster-webserver"]["ports"][0]["published"] in (3000, "3000")
    assert {"workshop-mlflow-data", "workshop-prefect-data", "workshop-dagster-data"} <= {
        volume["name"] for volume in with_dagster["volumes"].values()
    }
    for name in ("mlflow", "prefect-server"):
        assert "healthcheck" in services[name]
    # Inside the stack, services reach each other by name.
    worker = services["prefect-worker"]["environment"]
    assert worker["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert worker["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert services["dagster-daemon"]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "mlflow:5000" in services["mlflow"]["command"]  # MLflow accepts that Host header


def test_ports_come_from_the_env_file():
    config = compose_config("dagster", env={"MLFLOW_PORT": "5001", "PREFECT_PORT": "4201", "DAGSTER_PORT": "3001"})
    published = {
        name: config["services"][name]["ports"][0]["published"]
        for name in ("mlflow", "prefect-server", "dagster-webserver")
    }
    assert {name: int(port) for name, port in published.items()} == {
        "mlflow": 5001,
        "prefect-server": 4201,
        "dagster-webserver": 3001,
    }


@pytest.fixture(scope="module")
def stack_images() -> dict[str, str]:
    """Build the two workshop images as compose would, on the local base image, with the host network."""
    base = ensure_base_image()
    config = compose_config("dagster")
    images = {}
    for service in ("prefect-worker", "dagster-webserver"):
        build = config["services"][service]["build"]
        tag = config["services"][service]["image"]
        result = subprocess.run(
            [
                "docker",
                "build",
                "--network",
                "host",
                "--build-arg",
                f"BASE_IMAGE={base}",
                "-f",
                build["dockerfile"],
                "-t",
                tag,
                build["context"],
            ],
            capture_output=True,
            text=True,
            timeout=1800,
            check=False,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        images[service] = tag
    return images


def test_dagster_image_loads_the_workspace(stack_images):
    result = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "host",
            stack_images["dagster-webserver"],
            "dagster",
            "definitions",
            "validate",
            "-w",
            "/opt/dagster/workspace.yaml",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "Validation successful for code location exercises" in output
    assert "Validation successful for code location reference" in output


def test_worker_image_runs_the_scheduled_deployment(stack_images, workshop_env, prefect_server, mlflow_stack, tmp_path):
    """The prefect-worker container, pointed at the servers (by host network here, by name in the stack)."""
    deployed = run_script(REFERENCE, "deploy", "--interval", "10", env=workshop_env)
    assert deployed.returncode == 0, deployed.stderr[-3000:]
    already = completed_scheduled_ids(prefect_server.api)
    name = f"workshop-worker-{os.getpid()}"
    command = ["docker", "run", "--rm", "--name", name, "--network", "host"]
    for variable, value in (
        ("PREFECT_API_URL", prefect_server.api),
        ("MLFLOW_TRACKING_URI", mlflow_stack.url),
        ("PREFECT_WORKER_QUERY_SECONDS", "2"),
    ):
        command += ["-e", f"{variable}={value}"]
    log = tmp_path / "worker.log"
    worker = start_background([*command, stack_images["prefect-worker"]], log, dict(os.environ))
    try:
        await_scheduled_run(prefect_server.api, worker, log, already, timeout=180)
    finally:
        subprocess.run(["docker", "stop", "-t", "10", name], capture_output=True, check=False)
        worker.wait(timeout=60)
