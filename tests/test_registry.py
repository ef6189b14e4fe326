"""Publishing against real parts: an OCI registry with htpasswd auth, the Docker CLI's own login, MLflow.

Every test uses a DOCKER_CONFIG folder of its own: ~/.docker is never read or written.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess

import pytest
from conftest import run_cli

from mlprep.build.publish import DIGEST_TAG, IMAGE_TAG


@pytest.fixture(scope="module")
def registry():
    from infra import Registry

    server = Registry()
    yield server
    server.stop()
    # the images named after this registry's port would only pile up in the engine
    listed = docker("image", "ls", "--format", "{{.Repository}} {{.ID}}", check=False).stdout.splitlines()
    mine = {line.split()[1] for line in listed if line.startswith(f"{server.host}/")}
    if mine:
        docker("rmi", "-f", *mine, check=False)


@pytest.fixture
def docker_config(tmp_path):
    folder = tmp_path / "docker-config"
    folder.mkdir()
    return folder


def cli_env(mlflow_server, base_image, docker_config, **extra: str) -> dict[str, str]:
    return {
        **mlflow_server.env(),
        "MLPREP_BASE_IMAGE": base_image,
        "DOCKER_CONFIG": str(docker_config),
        **extra,
    }


def docker(*args: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, **kwargs)


def run_tags(mlflow_server, run_id: str) -> dict[str, str]:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server.url).get_run(run_id).data.tags


def test_push_records_the_digest_in_mlflow_and_the_image_pulls_back_by_digest(
    registry, docker_config, mlflow_server, example_run, base_image
):
    assert registry.login(docker_config).returncode == 0
    env = cli_env(mlflow_server, base_image, docker_config, MLPREP_REGISTRY=registry.host)
    built = run_cli("build", example_run, "auto", "--tag", "pushed", "--push", env=env, timeout=900)
    stderr = built.stderr.decode()
    assert built.returncode == 0, stderr[-3000:]
    repository = f"{registry.host}/preprocessing-testmodel-v1"
    digest = built.stdout.decode().strip().splitlines()[-1]
    assert re.fullmatch(rf"{re.escape(repository)}@sha256:[0-9a-f]{{64}}", digest), digest

    tags = run_tags(mlflow_server, example_run)
    assert tags[IMAGE_TAG] == f"{repository}:pushed"
    assert tags[DIGEST_TAG] == digest
    listed = run_cli("images", example_run, env=env)
    assert listed.returncode == 0, listed.stderr.decode()
    assert f"preprocessing\t{repository}:pushed\t{digest}" in listed.stdout.decode()

    # Gone from this engine, back from the registry by digest (with the login), and it runs.
    docker("rmi", "-f", f"{repository}:pushed", digest)
    assert docker("image", "inspect", digest, check=False).returncode != 0
    pulled = docker("pull", digest, check=False, env={**os.environ, "DOCKER_CONFIG": str(docker_config)})
    assert pulled.returncode == 0, pulled.stderr
    ran = subprocess.run(
        ["docker", "run", "--rm", "-i", digest],
        input=b'{"Contract": "Two Year"}',
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert b'"contract":"two_year"' in ran.stdout


def test_wrong_credentials_fail_the_build_and_tag_nothing(
    registry, docker_config, mlflow_server, example_run, base_image
):
    assert registry.login(docker_config, password="wrong").returncode != 0  # the registry refuses it
    # a stale credential, as a login that has since been revoked leaves behind
    stale = base64.b64encode(f"{registry.USER}:wrong-password".encode()).decode()
    (docker_config / "config.json").write_text(json.dumps({"auths": {registry.host: {"auth": stale}}}))
    env = cli_env(mlflow_server, base_image, docker_config)
    image = f"{registry.host}/preprocessing-denied"
    built = run_cli("build", example_run, image, "--tag", "denied", "--push", env=env, timeout=900)
    stderr = built.stderr.decode()
    assert built.returncode == 2
    assert f"pushing {image}:denied failed" in stderr
    assert f"docker login {registry.host}" in stderr
    assert "wrong-password" not in stderr
    tags = run_tags(mlflow_server, example_run)
    assert tags.get(IMAGE_TAG) != f"{image}:denied"
    assert "preprocessing-denied" not in tags.get(DIGEST_TAG, "")


def registry_digest(registry, repository: str, tag: str) -> str | None:
    """The digest the registry itself serves for ``repository:tag`` (its HTTP API, not Docker's)."""
    import httpx

    response = httpx.head(
        f"http://{registry.host}/v2/{repository}/manifests/{tag}",
        auth=(registry.USER, registry.PASSWORD),
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    return response.headers.get("docker-content-digest") if response.status_code == 200 else None


def test_mlflow_alias_event_promotes_the_version_images_building_them_first_when_missing(
    registry, docker_config, mlflow_server, example_run, base_image, tmp_path
):
    """MLflow delivers ``model_version_alias.created``: the first alias builds, pushes and records the
    images of the version, then tags them ``:champion``; the second alias re-tags by digest only."""
    import time
    import uuid

    import mlflow
    from mlflow import MlflowClient
    from test_build_api import AUTH, SECRET, start_api, wait_for

    assert registry.login(docker_config).returncode == 0
    api = start_api(
        tmp_path,
        mlflow_server,
        base_image,
        DOCKER_CONFIG=str(docker_config),
        MLPREP_REGISTRY=registry.host,
        MLPREP_PROMOTE_ALIASES="champion,production",
    )
    try:
        # a build requested with "push": true (MLPREP_PUSH_IMAGES is off here) is pushed and recorded
        pushed = api.client.post(
            "/build/sync", json={"run_id": example_run, "tag": "api-push", "push": True}, headers=AUTH
        ).json()
        assert pushed["status"] == "success" and pushed["push"] is True, pushed["error"]
        assert pushed["image"] == f"{registry.host}/preprocessing-testmodel-v1:api-push"
        digest = registry_digest(registry, "preprocessing-testmodel-v1", "api-push")
        assert digest and pushed["image_digest"] == f"{registry.host}/preprocessing-testmodel-v1@{digest}"

        client = MlflowClient(tracking_uri=mlflow_server.url)
        client.create_webhook(
            name=f"promote-{uuid.uuid4().hex[:6]}",
            url=f"{api.url}/webhooks/mlflow",
            events=["model_version_alias.created"],
            secret=SECRET,
        )
        time.sleep(2)  # MLflow caches the webhooks of an event for MLFLOW_WEBHOOK_CACHE_TTL (1 s here)
        mlflow.set_tracking_uri(mlflow_server.url)
        version = mlflow.register_model(client.get_model_version("testmodel", "1").source, "testmodel").version
        ignored = api.client.post(
            "/webhooks/dispatch",
            json={
                "entity": "model_version_alias",
                "action": "created",
                "data": {"name": "testmodel", "alias": "staging", "version": version},
            },
            headers=AUTH,
        ).json()
        assert ignored["status"] == "ignored"  # not in MLPREP_PROMOTE_ALIASES

        def promotion(alias: str) -> dict:
            client.set_registered_model_alias("testmodel", alias, version)
            deadline, build = time.monotonic() + 60, None
            while build is None and time.monotonic() < deadline:
                builds = api.client.get("/builds", headers=AUTH).json()
                build = next((b for b in builds if b["alias"] == alias), None)
                time.sleep(0.3)
            assert build is not None, f"MLflow delivered no {alias} event:\n{api.log.read_text()[-3000:]}"
            assert build["trigger"] == "mlflow-webhook" and build["run_id"] == example_run
            return wait_for(api, build["build_id"])

        champion = promotion("champion")
        assert champion["status"] == "success", champion["error"] + champion["log"][-3000:]
        assert "building them first" in champion["log"] and "Step 1/" in champion["log"]
        repositories = {
            "preprocessing": f"preprocessing-testmodel-{version}",
            "model": f"model-testmodel-{version}",
        }
        assert champion["image"] == f"{registry.host}/{repositories['preprocessing']}:champion"
        assert champion["model_image"] == f"{registry.host}/{repositories['model']}:champion"
        # MLflow knows both images of the version, pinned by digest
        version_tags = client.get_model_version("testmodel", version).tags
        assert version_tags[DIGEST_TAG] == champion["model_image_digest"]
        assert run_tags(mlflow_server, example_run)[DIGEST_TAG] == champion["image_digest"]
        listed = run_cli("images", f"models:/testmodel/{version}", env=mlflow_server.env())
        assert listed.returncode == 0, listed.stderr.decode()
        assert champion["model_image_digest"] in listed.stdout.decode()
        assert champion["image_digest"] in listed.stdout.decode()
        for kind, field in (("preprocessing", "image_digest"), ("model", "model_image_digest")):
            digest = champion[field].split("@", 1)[1]
            assert registry_digest(registry, repositories[kind], "latest") == digest
            assert registry_digest(registry, repositories[kind], "champion") == digest

        production = promotion("production")
        assert production["status"] == "success", production["error"]
        assert "re-tagging" in production["log"] and "Step 1/" not in production["log"]  # no rebuild
        assert production["image_digest"] == champion["image_digest"]
        assert production["model_image_digest"] == champion["model_image_digest"]
        for kind, field in (("preprocessing", "image_digest"), ("model", "model_image_digest")):
            assert registry_digest(registry, repositories[kind], "production") == champion[field].split("@", 1)[1]
    finally:
        api.stop()
