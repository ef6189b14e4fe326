"""The Dagster workshop: full and partial materialisation in process, the schedule, the exercises."""

from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import WORKSHOP
from infra import start_background, stop_server
from mlflow.exceptions import MlflowException

DAGSTER = WORKSHOP / "03_dagster"


def dagster_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``dagster ARGS`` in the workshop's Dagster folder, as a student (or the webserver) runs it."""
    return subprocess.run(
        [sys.executable, "-m", "dagster", *args],
        capture_output=True,
        text=True,
        cwd=DAGSTER,
        env={**os.environ, **env},
        timeout=180,
        check=False,
    )


@pytest.fixture
def dagster_env(workshop_env, monkeypatch):
    for name in ("MLFLOW_TRACKING_URI", "DAGSTER_HOME", "CHURN_DATA_PATH"):
        monkeypatch.setenv(name, workshop_env[name])
    monkeypatch.syspath_prepend(str(DAGSTER))
    return workshop_env


@pytest.fixture
def reference(dagster_env):
    return importlib.import_module("Dagster_Workshop")


def test_full_then_partial_materialisation_with_mlflow_metadata(reference, mlflow_client):
    full = reference.run()
    assert full["success"]
    assert full["materialized"] == [
        "raw_customer_data",
        "customer_split",
        "customer_features",
        "trained_model",
        "model_evaluation",
        "registered_model",
    ]
    first = full["registered_model"]
    run = mlflow_client.get_run(first["mlflow_run_id"])
    assert run.data.metrics["roc_auc"] == pytest.approx(first["roc_auc"], abs=1e-4)
    assert run.data.tags["model_name"] == "churn-dagster"

    # Re-train only: the model and what depends on it; data and features are read back from storage.
    partial = reference.run(reference.RETRAIN, model_type="random_forest")
    assert partial["success"] and partial["materialized"] == ["trained_model", "model_evaluation", "registered_model"]
    second = partial["registered_model"]
    assert second["model_version"] == first["model_version"] + 1
    assert mlflow_client.get_run(second["mlflow_run_id"]).data.params["model_type"] == "random_forest"
    champion = mlflow_client.get_model_version_by_alias("churn-dagster", "champion").version
    assert int(champion) == (second["model_version"] if second["champion"] else first["model_version"])


def test_monthly_partitions_reject_then_promote_on_the_price_rise_and_check_the_auc(reference, mlflow_client):
    from dagster import AssetRecordsFilter, DagsterInstance

    with contextlib.suppress(MlflowException):  # another test may have materialised the monthly assets
        mlflow_client.delete_registered_model("churn-dagster-monthly")
    outcomes = [reference.run_month(month) for month in ("2025-01", "2025-02", "2025-03")]
    assert all(outcome["success"] for outcome in outcomes)
    assert [outcome["monthly_model"]["champion"] for outcome in outcomes] == [True, False, True]
    assert all(outcome["checks"] == {"holdout_auc_above_threshold": True} for outcome in outcomes)
    champion = mlflow_client.get_model_version_by_alias("churn-dagster-monthly", "champion")
    assert champion.tags["data_month"] == "2025-03"
    # The drift is visible partition by partition.
    instance = DagsterInstance.get()

    def churn_rate(month: str) -> float:
        selected = AssetRecordsFilter(reference.monthly_customers.key, asset_partitions=[f"{month}-01"])
        (record,) = instance.fetch_materializations(selected, limit=1).records
        return record.asset_materialization.metadata["churn_rate"].value

    churn = {month: churn_rate(month) for month in ("2025-02", "2025-03")}
    assert churn["2025-03"] > churn["2025-02"] + 0.05
    # The asset check fails when the model misses the threshold (and the model is not promoted).
    strict = reference.run_month("2025-04", threshold=0.99)
    assert strict["checks"] == {"holdout_auc_above_threshold": False} and not strict["monthly_model"]["champion"]


def test_metadata_on_every_materialisation(reference, dagster_env):
    from dagster import DagsterInstance

    instance = DagsterInstance.get()
    reference.run()
    rows = instance.get_latest_materialization_event(reference.raw_customer_data.key)
    assert rows.asset_materialization.metadata["rows"].value == 2000
    split = instance.get_latest_materialization_event(reference.customer_split.key).asset_materialization
    assert split.metadata["train_rows"].value == 1600 and split.metadata["test_rows"].value == 400
    evaluation = instance.get_latest_materialization_event(reference.model_evaluation.key).asset_materialization
    assert {"accuracy", "precision", "recall", "f1", "roc_auc"} <= set(evaluation.metadata)


def test_definitions_and_schedule_load(reference):
    defs = reference.defs
    schedule = defs.get_schedule_def("churn_training_schedule")
    assert schedule.cron_schedule == "*/2 * * * *"
    assert schedule.job_name == "churn_training_job"
    from dagster import build_schedule_context

    tick = schedule.evaluate_tick(build_schedule_context())  # what the daemon does every 2 minutes
    assert len(tick.run_requests) == 1
    job = defs.resolve_job_def("churn_training_job")
    assert len(job.asset_layer.executable_asset_keys) == 6
    # Dependencies come from parameter names.
    graph = defs.resolve_asset_graph()
    parents = {
        key.to_user_string(): {p.to_user_string() for p in graph.get(key).parent_keys}
        for key in graph.get_all_asset_keys()
    }
    assert parents["customer_split"] == {"raw_customer_data"}
    assert parents["registered_model"] == {"trained_model", "model_evaluation", "customer_features", "customer_split"}


@pytest.mark.parametrize("name", ["Dagster_Workshop.py", "Dagster_Exercises.py"])
def test_the_webserver_can_load_each_file(name, dagster_env):
    """What the webserver does with workspace.yaml: load the code location (the exercises load too)."""
    result = dagster_cli("definitions", "validate", "-f", name, env=dagster_env)
    assert result.returncode == 0, result.stderr[-3000:]


def test_exercises_graph_is_broken_until_fixed_and_the_reference_is_whole(dagster_env, reference):
    from churn import workshop

    exercises = importlib.import_module("Dagster_Exercises")
    shipped = exercises.check(exercises.defs)
    assert [done for _, done, _ in shipped] == [False, False, False, False]
    assert "customer_features dépend de raw_customer_data" in shipped[0][2]
    solved = exercises.check(reference.defs)
    assert all(done for _, done, _ in solved), solved
    assert workshop.report(solved) == 0


def test_the_daemon_runs_churn_training_schedule(dagster_env, tmp_path, mlflow_client):
    """As in the stack: the schedule is switched on, and the daemon launches the job on the next tick."""
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, **dagster_env, "DAGSTER_HOME": str(home)}
    location = ["-f", "Dagster_Workshop.py"]
    started = dagster_cli("schedule", "start", "churn_training_schedule", *location, env=env)
    assert started.returncode == 0, started.stderr[-3000:]
    daemon = start_background(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", *location], tmp_path / "daemon.log", env, DAGSTER
    )
    before = len(mlflow_client.search_model_versions("name='churn-dagster'"))
    try:
        instance = DagsterInstance.from_config(str(home))
        scheduled = RunsFilter(tags={"dagster/schedule_name": "churn_training_schedule"})
        deadline = time.monotonic() + 240  # a */2 cron ticks within 120 s, then the run takes ~20 s
        runs = []
        while time.monotonic() < deadline:
            runs = instance.get_runs(scheduled)
            if any(run.status == DagsterRunStatus.SUCCESS for run in runs):
                break
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
            time.sleep(3)
        else:
            log = (tmp_path / "daemon.log").read_text()[-3000:]
            pytest.fail(f"no scheduled run succeeded ({[run.status for run in runs]}):\n{log}")
    finally:
        stop_server(daemon, None)
    assert len(mlflow_client.search_model_versions("name='churn-dagster'")) > before
