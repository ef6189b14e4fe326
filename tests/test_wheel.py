"""mlprep as a team installs it: the wheel in a fresh venv, used from an empty folder outside the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, ProcessServer, free_port

UV = [sys.executable, "-m", "uv", "--native-tls"]  # the system CA store: package index proxies have their own CA


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The `bin` folder of a venv holding the wheel with its `[build]` extra, and nothing of the checkout."""
    folder = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [*UV, "build", "--wheel", "--out-dir", str(folder / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (folder / "dist").glob("mlflow_preprocessing_runner-*.whl")
    venv = folder / "venv"
    subprocess.run([*UV, "venv", "-q", "--python", sys.executable, str(venv)], check=True, timeout=120)
    installed = subprocess.run(
        [*UV, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), f"{wheel}[build]"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv / "bin"


def outside(tmp_path: Path, extra: dict[str, str]) -> dict[str, str]:
    """An environment that cannot reach the checkout: no PYTHONPATH, an empty working folder."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, **extra}


def test_the_wheel_builds_images_and_serves_the_build_api(installed, tmp_path, mlflow_server, example_run, base_image):
    empty = tmp_path / "empty"
    empty.mkdir()
    env = outside(tmp_path, {**mlflow_server.env(), "MLPREP_BASE_IMAGE": base_image})

    def installed_run(*command: str) -> str:
        """``command`` from the venv's bin folder, in the empty folder; its stdout's last line."""
        done = subprocess.run(
            [str(installed / command[0]), *command[1:]],
            capture_output=True,
            text=True,
            cwd=empty,
            env=env,
            timeout=900,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout.strip().splitlines()[-1]

    where = installed_run("python", "-c", "import mlprep; print(mlprep.__file__)")
    assert str(installed.parent) in where and str(ROOT) not in where

    assert installed_run("mlprep", "build", example_run, "auto", "--tag", "from-wheel") == (
        "preprocessing-testmodel-v1:from-wheel"
    )
    ran = subprocess.run(
        ["docker", "run", "--rm", "-i", "preprocessing-testmodel-v1:from-wheel"],
        input=b'{"Contract": "Two Year"}',
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert b'"contract":"two_year"' in ran.stdout
    assert (
        installed_run("mlprep", "build-model", "models:/testmodel/1", "model-from-wheel") == "model-from-wheel:latest"
    )

    port = free_port()
    api_env = {**env, "BUILD_API_DATABASE_URL": f"sqlite:///{empty}/builds.db", "BUILD_API_TOKEN": "t"}
    api = ProcessServer(
        [str(installed / "mlprep"), "build-api", "--port", str(port)], api_env, port, tmp_path / "api.log", cwd=empty
    )
    try:
        assert httpx.get(f"{api.url}/docs").status_code == 200
        health = api.client.get("/health").json()
        assert health["docker"]["ok"] and health["mlflow"]["ok"] and health["database"]["ok"]
        answer = api.client.post(
            "/build/sync",
            json={"run_id": example_run, "tag": "from-wheel-api"},
            headers={"Authorization": "Bearer t"},
        ).json()
        assert answer["status"] == "success", answer.get("error")
    finally:
        api.stop()
    assert not any(empty.glob("*.py")) and shutil.which("mlprep", path=str(installed))
