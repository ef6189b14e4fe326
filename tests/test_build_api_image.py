"""The build API's own image (`mlprep build-api-image`): it serves, guards and reaches the engine."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import httpx
import pytest
import yaml
from conftest import ROOT, free_port, run_cli

from mlprep.services import wait_http

TOKEN = "build-api-image-token"
BUILD_API_TEST_IMAGE = "mlprep-build-api-test"


@pytest.fixture(scope="module")
def build_api_image(base_image) -> str:
    """Built by the command from the local base image (no pull, --network host), every session. Named by
    the content hash of what the command builds from (the package, its Dockerfile and lock), and kept:
    Docker's layer cache then rebuilds only the layers that changed, not the dependencies."""
    from infra import content_hash, prune_stale_tags

    tag = content_hash(["src/mlprep"], base_image)
    result = run_cli("build-api-image", BUILD_API_TEST_IMAGE, "--tag", tag, "--base-image", base_image, timeout=1200)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert result.stdout.decode().strip() == f"{BUILD_API_TEST_IMAGE}:{tag}"
    prune_stale_tags(BUILD_API_TEST_IMAGE, tag)
    return f"{BUILD_API_TEST_IMAGE}:{tag}"


@pytest.fixture
def container(build_api_image) -> Iterator[tuple[str, str]]:
    """The image run as it ships (its user, read-only root), the engine's socket mounted with its group."""
    port = free_port()
    socket_group = str(os.stat("/var/run/docker.sock").st_gid)
    run = [
        "docker", "run", "-d", "--rm", "--network", "host", "--read-only", "--tmpfs", "/tmp",
        "--tmpfs", "/data:uid=10001", "--group-add", socket_group,
        "-v", "/var/run/docker.sock:/var/run/docker.sock",
        "-e", f"BUILD_API_TOKEN={TOKEN}", "-e", "BUILD_API_HOST=127.0.0.1", "-e", f"BUILD_API_PORT={port}",
        build_api_image,
    ]  # fmt: skip
    started = subprocess.run(run, capture_output=True, text=True, check=False)
    assert started.returncode == 0, started.stderr
    identifier = started.stdout.strip()
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http(f"{url}/health", timeout=120)
        except Exception as error:
            logs = subprocess.run(["docker", "logs", identifier], capture_output=True, text=True, check=False)
            pytest.fail(f"the build API container did not answer: {error}\n{logs.stdout}{logs.stderr}")
        yield identifier, url
    finally:
        subprocess.run(["docker", "rm", "-f", identifier], capture_output=True, check=False)


def test_the_build_api_image_serves_guards_and_reaches_the_engine(container):
    identifier, url = container
    health = httpx.get(f"{url}/health")
    assert health.status_code == 200
    assert health.json()["docker"]["ok"] is True, health.json()  # the image's Docker CLI, as user 10001
    assert httpx.get(f"{url}/builds").status_code == 401
    assert httpx.get(f"{url}/builds", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(f"{url}/builds", headers={"Authorization": f"Bearer {TOKEN}"}).json() == []
    user = subprocess.run(["docker", "exec", identifier, "id", "-u"], capture_output=True, text=True, check=True)
    assert user.stdout.strip() == "10001"


def test_the_image_healthcheck_asks_health(container, build_api_image):
    identifier, _ = container
    inspected = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .Config.Healthcheck.Test}}", build_api_image],
        capture_output=True,
        text=True,
        check=True,
    )
    kind, *command = json.loads(inspected.stdout)
    assert kind == "CMD" and "/health" in command[-1]
    assert subprocess.run(["docker", "exec", identifier, *command], capture_output=True, check=False).returncode == 0
    # the same check, sent to a port nothing listens on, fails: it really asks the API
    elsewhere = ["docker", "exec", "-e", f"BUILD_API_PORT={free_port()}", identifier, *command]
    assert subprocess.run(elsewhere, capture_output=True, check=False).returncode != 0


def test_the_kubernetes_overlay_runs_the_image_the_command_builds():
    overlay = ROOT / "deploy" / "kubernetes" / "overlays" / "build-api"
    deployment = yaml.safe_load((overlay / "deployment.yaml").read_text())
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "mlprep-build-api" and container["args"] == ["build-api"]
    images = yaml.safe_load((overlay / "kustomization.yaml").read_text())["images"]
    assert [i["name"] for i in images] == ["mlprep-build-api"]
    help_text = run_cli("build-api-image", "--help").stdout.decode()
    assert "default mlprep-build-api" in help_text


def test_builds_cannot_choose_the_build_api_dockerfile():
    """It builds no preprocessing image: the build API's `dockerfile` field does not offer it."""
    from mlprep.build.images import BUILD_API_DOCKERFILE, dockerfiles

    assert BUILD_API_DOCKERFILE.is_file()
    assert BUILD_API_DOCKERFILE.name not in dockerfiles() and "Dockerfile.model" in dockerfiles()
