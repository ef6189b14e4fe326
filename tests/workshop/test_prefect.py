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
from conftest import WORKSHOP, last_json, run_churn, run_script
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


def test_part3_cache_misses_then_hits_on_every_run_and_selects_by_validation(workshop_env):
    for _ in range(2):  # the second run finds the first run's cache, and still shows a real miss first
        result = run_script(REFERENCE, "part3", env=workshop_env)
        outcome = last_json(result)
        assert (outcome["first_call"], outcome["second_call"]) == ("Completed", "Cached")
    scores = outcome["scores"]  # cross-validated on the training split
    assert len(scores) == 3 and all(0.7 < score <= 1 for score in scores.values())
    assert outcome["best"] == max(scores, key=scores.get)
    assert "validation croisée" in result.stdout + result.stderr and 0.7 < outcome["test_roc_auc"] <= 1


def test_part4_typed_parameters_and_subflows(workshop_env):
    result = run_script(REFERENCE, "part4", env=workshop_env)
    outcome = last_json(result)
    assert set(outcome["results"]) == {"logistic_regression(C=1.0)", "logistic_regression(C=0.1)"}
    assert outcome["best"] in outcome["results"]
    assert "paramètres refusés" in result.stdout + result.stderr  # the invalid configuration was rejected


def test_part5_pipeline_tracks_and_registers(workshop_env, mlflow_client):
    outcome = last_json(run_script(REFERENCE, "part5", env=workshop_env))
    assert outcome["month"] == "2025-01"  # an empty feed starts with its first month
    run = mlflow_client.get_run(outcome["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["model_type"] == "logistic_regression" and run.data.metrics["roc_auc"] > 0.75
    assert run.data.metrics["cv_roc_auc_std"] > 0
    # The rows the model learnt from are the run's dataset input.
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "customers 2025-01..2025-01" and dataset.tags[0].value == "training"
    assert {"preprocessing.py", "requirements.txt"} <= {a.path for a in mlflow_client.list_artifacts(run.info.run_id)}
    version = mlflow_client.get_model_version("churn-prefect", outcome["version"])
    assert version.tags["validation_status"] in {"approved", "rejected"}
    assert mlflow_client.get_model_version_by_alias("churn-prefect", "candidate-latest").version == outcome["version"]
    assert mlflow_client.get_model_version_by_alias("churn-prefect", "champion") is not None
    # Nothing new in the feed: the next run says so and registers nothing.
    again = run_script(REFERENCE, "part5", env=workshop_env)
    assert last_json(again)["skipped"] and "aucun nouveau mois depuis 2025-01" in again.stdout + again.stderr
    assert len(mlflow_client.search_model_versions("name='churn-prefect'")) == int(outcome["version"])


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


def _versions_by_month(client) -> dict[str, object]:
    return {v.tags["data_month"]: v for v in client.search_model_versions("name='churn-prefect'")}


def _deployment_is_idle(api: str) -> bool:
    deployment = _deployment(api)
    return deployment["paused"] and not any(schedule["active"] for schedule in deployment["schedules"])


def test_scheduled_months_reject_then_promote_and_reset_stops_it_all(
    workshop_env, prefect_server, mlflow_client, tmp_path
):
    """Part 5 trains on January; then a worker runs the schedule, each run bringing a month. February
    looks like January: its challenger is rejected; prices rise in March: its challenger wins on fresh
    data and is promoted. The trainer's reset then leaves nothing running or registered."""
    api = prefect_server.api
    env = {**workshop_env, "CHURN_FEED_MONTHS": "3"}
    cleared = run_churn("reset", "--yes", env=env)  # start from an empty store and feed
    assert cleared.returncode == 0, cleared.stdout + cleared.stderr
    assert last_json(run_script(REFERENCE, "part5", env=env))["month"] == "2025-01"  # as students do first
    deployed = run_script(REFERENCE, "deploy", "--interval", "10", env=env)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "python -m churn reset" in deployed.stdout  # the trainer is told how to stop it
    deployment = _deployment(api)
    schedules = {
        (s["schedule"].get("interval"), s["schedule"].get("cron"), s["active"]) for s in deployment["schedules"]
    }
    assert schedules == {(10.0, None, True), (None, "0 6 * * *", False)}
    assert deployment["work_pool_name"] == "workshop-pool" and deployment["parameters"] == {"new_month": True}

    # Nobody triggers anything: the worker polls the pool and runs what the schedule created.
    path = os.pathsep.join(filter(None, [str(PREFECT), os.environ.get("PYTHONPATH")]))
    worker_env = {**os.environ, **env, "PYTHONPATH": path, "PREFECT_WORKER_QUERY_SECONDS": "2"}
    log = tmp_path / "worker.log"
    worker = start_background(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "workshop-pool", "--type", "process"],
        log,
        worker_env,
    )
    try:
        deadline = time.monotonic() + 600
        while len(completed_scheduled_ids(api)) < 2:  # February, then March
            assert time.monotonic() < deadline, f"{completed_scheduled_ids(api)}\n{log.read_text()[-3000:]}"
            assert worker.poll() is None, log.read_text()[-3000:]
            time.sleep(3)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
    versions = _versions_by_month(mlflow_client)
    assert sorted(versions) == ["2025-01", "2025-02", "2025-03"]
    assert len(mlflow_client.search_model_versions("name='churn-prefect'")) == 3  # one per month, no duplicate
    status = {month: v.tags["validation_status"] for month, v in versions.items()}
    assert status == {"2025-01": "approved", "2025-02": "rejected", "2025-03": "approved"}
    assert mlflow_client.get_model_version_by_alias("churn-prefect", "champion").version == versions["2025-03"].version
    rejected = mlflow_client.get_run(versions["2025-02"].tags["run_id"]).data.metrics
    assert rejected["holdout_gain"] < 0.01 and rejected["champion_holdout_roc_auc"] > 0
    promoted = mlflow_client.get_run(versions["2025-03"].tags["run_id"]).data.metrics
    assert promoted["holdout_gain_low"] > 0 and promoted["holdout_gain"] >= 0.01

    reset = run_churn("reset", "--yes", env=env)
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert "1 déploiement(s) en pause" in reset.stdout and "modèle(s) enregistré(s) supprimé(s)" in reset.stdout
    assert mlflow_client.search_registered_models() == []
    assert _deployment_is_idle(api) and completed_scheduled_ids(api) == set()
    assert list(Path(env["CHURN_FEED_DIR"]).iterdir()) == []
    # In class, deploying again switches the schedule back on.
    redeployed = run_script(REFERENCE, "deploy", "--interval", "10", env=env)
    assert redeployed.returncode == 0 and not _deployment_is_idle(api)
    run_churn("reset", "--yes", env=env)  # and nothing runs behind the next tests' backs


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
