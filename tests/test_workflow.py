"""The GitHub workflow parses, and references scripts and options that exist."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "build-mlflow-images.yml"


def load() -> dict:
    document = yaml.safe_load(WORKFLOW.read_text())
    document["on"] = document.pop(True, document.get("on"))  # YAML 1.1 reads the key `on` as true
    return document


def test_triggered_by_the_mlflow_repository_dispatch():
    document = load()
    assert document["on"]["repository_dispatch"]["types"] == ["mlflow-model-version"]
    env = document["env"]
    assert env["MLFLOW_TRACKING_URI"] == "${{ secrets.MLFLOW_TRACKING_URI }}"
    assert env["MLFLOW_TRACKING_USERNAME"] == "${{ secrets.MLFLOW_USERNAME }}"
    assert env["MLFLOW_TRACKING_PASSWORD"] == "${{ secrets.MLFLOW_PASSWORD }}"
    for field in ("name", "version", "run_id", "source"):
        assert f"client_payload.data.{field}" in WORKFLOW.read_text()


def test_model_job_runs_only_after_the_preprocessing_job():
    jobs = load()["jobs"]
    assert set(jobs) == {"preprocessing-image", "model-image"}
    assert jobs["model-image"]["needs"] == "preprocessing-image"


def test_scripts_and_options_exist():
    runs = [step["run"] for job in load()["jobs"].values() for step in job["steps"] if "run" in step]
    used = {"build_scripts/build_image.py": set(), "build_scripts/build_model_image.py": set()}
    for run in runs:
        for script, options in used.items():
            for line in run.splitlines():
                if script in line:
                    options.update(re.findall(r"(--[a-z-]+)", line))
    for script, options in used.items():
        assert (ROOT / script).is_file()
        assert options, f"{script} is not called"
        help_text = subprocess.run(
            [sys.executable, str(ROOT / script), "--help"], capture_output=True, text=True, check=True
        ).stdout
        for option in options:
            assert option in help_text, f"{script} has no option {option}"
    naming = subprocess.run(
        [sys.executable, "-m", "mlprep.build.naming", "suffix", "Churn Model", "3"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert naming.stdout.strip() == "suffix=churn-model-3"


def test_no_payload_is_interpolated_into_a_shell_line():
    for job in load()["jobs"].values():
        for step in job["steps"]:
            assert "${{" not in step.get("run", ""), f"expression in a run: line of {step.get('name')}"


def steps(job: str) -> list[dict]:
    return load()["jobs"][job]["steps"]


def test_both_jobs_log_in_to_ghcr_with_the_workflow_token_and_push():
    assert load()["permissions"]["packages"] == "write"
    for job in ("preprocessing-image", "model-image"):
        found = steps(job)
        login = next(s for s in found if s.get("uses", "").startswith("docker/login-action@"))
        assert login["with"] == {
            "registry": "ghcr.io",
            "username": "${{ github.actor }}",
            "password": "${{ secrets.GITHUB_TOKEN }}",
        }
        build = next(s for s in found if "build_scripts/build" in s.get("run", ""))
        assert found.index(login) < found.index(build)
        assert "--push" in build["run"] and build["env"]["MLPREP_REGISTRY"].startswith("${{")


def test_a_null_run_id_is_resolved_through_mlflow(mlflow_server, example_run):
    """A version registered from a logged model (models:/m-...) carries no run id in its event."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.url)
    mlflow.set_tracking_uri(mlflow_server.url)
    source = client.get_model_version("testmodel", "1").source
    assert re.fullmatch(r"models:/m-[0-9a-f]+", source), source
    version = mlflow.register_model(source, "testmodel").version
    step = next(s for s in steps("preprocessing-image") if s.get("id") == "run")
    assert "python -m mlprep.build.api.webhooks run-id" in step["run"]
    env = {**os.environ, **mlflow_server.env()}
    resolver = [sys.executable, "-m", "mlprep.build.api.webhooks", "run-id"]
    resolved = subprocess.run(
        [*resolver, "testmodel", str(version), source], capture_output=True, text=True, env=env, check=False
    )
    assert resolved.returncode == 0, resolved.stderr
    assert resolved.stdout == f"run_id={example_run}\n"  # a GITHUB_OUTPUT line
    unknown = subprocess.run([*resolver, "no-such-model", "1"], capture_output=True, text=True, env=env, check=False)
    assert unknown.returncode == 1 and "no preprocessing to build" in unknown.stderr


WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))


@pytest.fixture(scope="module")
def actionlint() -> list[str]:
    from infra import ensure_actionlint

    return ensure_actionlint()


def test_actionlint_finds_nothing_in_any_workflow(actionlint):
    assert WORKFLOWS
    result = subprocess.run([*actionlint, *map(str, WORKFLOWS)], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_actionlint_reports_a_broken_workflow(actionlint, tmp_path):
    """The linter really runs: an unknown job key, an untrusted payload in a run: line are findings."""
    text = WORKFLOW.read_text()
    broken = {
        'unexpected key "run-on"': text.replace("runs-on: ubuntu-latest", "run-on: ubuntu-latest", 1),
        '"github.event.head_commit.message" is potentially untrusted': text.replace(
            '"$MODEL_NAME"', "${{ github.event.head_commit.message }}", 1
        ),
    }
    for finding, content in broken.items():
        path = tmp_path / "broken.yml"
        path.write_text(content)
        result = subprocess.run([*actionlint, str(path)], capture_output=True, text=True, check=False)
        assert result.returncode == 1, result.stderr
        assert finding in result.stdout


def test_shellcheck_finds_nothing_in_any_run_script():
    """What actionlint checks with shellcheck when it runs natively (its WebAssembly build cannot)."""
    if shutil.which("shellcheck") is None:
        from infra import _apt_install

        _apt_install("shellcheck")
    for path in WORKFLOWS:
        document = yaml.safe_load(path.read_text())
        for name, job in document["jobs"].items():
            for index, step in enumerate(job.get("steps", [])):
                if "run" not in step:
                    continue
                result = subprocess.run(
                    # actionlint's own options: bash (the runner's default shell), its excluded codes
                    ["shellcheck", "--norc", "--shell=bash", "--exclude=SC1091,SC2194,SC2050,SC2154,SC2157", "-"],
                    input=step["run"],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                assert result.returncode == 0, f"{path.name} job {name} step {index}:\n{result.stdout}"
