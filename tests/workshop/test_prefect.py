"""The Prefect workshop against a real Prefect server and a real MLflow server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import WORKSHOP, last_json, run_script
from infra import start_background

PREFECT = WORKSHOP / "02_prefect"
REFERENCE = PREFECT / "Prefect_Workshop.py"


def test_part1_tasks_and_flows(workshop_env):
    assert last_json(run_script(REFERENCE, "part1", env=workshop_env)) == {"rows": 2000, "churn_rate": 0.347}


def test_part2_retries_are_observed(workshop_env):
    result = run_script(REFERENCE, "part2", "--fast", env=workshop_env)
    assert last_json(result) == {"attempts": 3, "rows": 2000}
    # Prefect itself retried (the source failed twice): its log says so.
    assert "Retry 1/3" in result.stdout + result.stderr and "Retry 2/3" in result.stdout + result.stderr


def test_part3_cache_hits_and_parallel_models(workshop_env):
    first = last_json(run_script(REFERENCE, "part3", env=workshop_env))
    assert first["second_call"] == "Cached"
    assert len(first["scores"]) == 3 and all(0.7 < score <= 1 for score in first["scores"].values())
    # The cache is keyed by the data's content and persisted: another process hits it at once.
    again = last_json(run_script(REFERENCE, "part3", env=workshop_env))
    assert again["first_call"] == "Cached"


def test_part4_typed_parameters_and_subflows(workshop_env):
    result = run_script(REFERENCE, "part4", env=workshop_env)
    outcome = last_json(result)
    assert set(outcome["results"]) == {"logistic_regression(C=1.0)", "logistic_regression(C=0.1)"}
    assert outcome["best"] in outcome["results"]
    assert "paramètres refusés" in result.stdout + result.stderr  # the invalid configuration was rejected


def test_part5_pipeline_tracks_and_registers(workshop_env, mlflow_client):
    outcome = last_json(run_script(REFERENCE, "part5", env=workshop_env))
    run = mlflow_client.get_run(outcome["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["model_type"] == "logistic_regression" and run.data.metrics["roc_auc"] > 0.75
    assert {"preprocessing.py", "requirements.txt"} <= {a.path for a in mlflow_client.list_artifacts(run.info.run_id)}
    version = mlflow_client.get_model_version("churn-prefect", outcome["version"])
    assert version.tags["validation_status"] in {"approved", "rejected"}
    assert mlflow_client.get_model_version_by_alias("churn-prefect", "candidate-latest").version == outcome["version"]
    assert mlflow_client.get_model_version_by_alias("churn-prefect", "champion") is not None


def test_part7_notifications_reach_discord_and_slack(workshop_env, webhook_receiver):
    env = {
        **workshop_env,
        "DISCORD_WEBHOOK_URL": f"{webhook_receiver.url}/discord",
        "SLACK_WEBHOOK_URL": f"{webhook_receiver.url}/slack",
    }
    assert last_json(run_script(REFERENCE, "part7", env=env)) == {"success": "Completed", "failure": "Failed"}
    discord = [body["content"] for path, body in webhook_receiver.received if path == "/discord"]
    slack = [body["text"] for path, body in webhook_receiver.received if path == "/slack"]
    assert len(discord) == len(slack) == 2
    assert discord[0].startswith("✅") and "ROC AUC" in discord[0]
    assert slack[1].startswith("❌") and "test_size_ratio must be between 0 and 1" in slack[1]


def test_deploy_without_a_server_says_what_to_do(workshop_env):
    env = {**workshop_env, "PREFECT_API_URL": ""}
    result = run_script(REFERENCE, "deploy", env=env)
    assert result.returncode == 1
    assert "PREFECT_API_URL n'est pas défini" in result.stderr and "docker compose up -d" in result.stderr


def _deployment(api: str) -> dict:
    response = httpx.get(f"{api}/deployments/name/churn-training-pipeline/churn-retrain-every-2-min", timeout=10)
    response.raise_for_status()
    return response.json()


def _completed_scheduled_runs(api: str, deployment_id: str) -> list[dict]:
    response = httpx.post(
        f"{api}/flow_runs/filter",
        json={
            "deployments": {"id": {"any_": [deployment_id]}},
            "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
        },
        timeout=10,
    )
    response.raise_for_status()
    return [run for run in response.json() if "auto-scheduled" in run["tags"]]


def completed_scheduled_ids(api: str) -> set[str]:
    """The deployment's completed runs that its schedule created (none while it is not registered)."""
    try:
        return {run["id"] for run in _completed_scheduled_runs(api, _deployment(api)["id"])}
    except httpx.HTTPStatusError:
        return set()


def await_scheduled_run(api: str, runner: subprocess.Popen, log: Path, already: set[str], timeout: float) -> None:
    """Return once a scheduled run not in ``already`` has completed; fail (with ``log``) otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if completed_scheduled_ids(api) - already:
            return
        assert runner.poll() is None, log.read_text()[-3000:]
        time.sleep(2)
    pytest.fail(f"no scheduled run completed within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _mlflow_runs(client) -> int:
    experiment = client.get_experiment_by_name("churn-prefect")
    return len(client.search_runs([experiment.experiment_id])) if experiment else 0


def test_deployment_schedule_runs_by_itself_on_the_worker(workshop_env, prefect_server, mlflow_client, tmp_path):
    api = prefect_server.api
    deployed = run_script(REFERENCE, "deploy", "--interval", "10", env=workshop_env)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    deployment = _deployment(api)
    schedules = {
        (s["schedule"].get("interval"), s["schedule"].get("cron"), s["active"]) for s in deployment["schedules"]
    }
    assert schedules == {(10.0, None, True), (None, "0 6 * * *", False)}
    assert deployment["work_pool_name"] == "workshop-pool"
    before = _mlflow_runs(mlflow_client)

    # Nobody triggers anything: the worker polls the pool and runs what the schedule created.
    env = {**os.environ, **workshop_env, "PYTHONPATH": str(PREFECT), "PREFECT_WORKER_QUERY_SECONDS": "2"}
    log = tmp_path / "worker.log"
    worker = start_background(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "workshop-pool", "--type", "process"], log, env
    )
    try:
        await_scheduled_run(api, worker, log, set(), timeout=300)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
    assert _mlflow_runs(mlflow_client) > before  # each scheduled run is a new MLflow run


def test_deploy_serve_runs_the_schedule_from_the_terminal(workshop_env, prefect_server, tmp_path):
    """Without a worker: `deploy --serve` registers the deployment and runs its scheduled runs itself."""
    already = completed_scheduled_ids(prefect_server.api)  # those of a worker, in an earlier test, do not count
    log = tmp_path / "serve.log"
    served = start_background(
        [sys.executable, str(REFERENCE), "deploy", "--serve", "--interval", "20"], log, {**os.environ, **workshop_env}
    )
    try:
        # Registration, the first tick, then a whole training run (runs 5 s apart overlapped and slowed
        # each other down).
        await_scheduled_run(prefect_server.api, served, log, already, timeout=300)
    finally:
        os.killpg(served.pid, signal.SIGINT)  # Ctrl+C, as the student stops it
        served.wait(timeout=60)
