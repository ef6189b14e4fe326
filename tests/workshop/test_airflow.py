"""The Airflow DAG runs with dag.test() in Airflow's own environment and leaves its MLflow runs."""

from __future__ import annotations

import os
import subprocess

from conftest import WORKSHOP


def test_dag_test_trains_logs_and_registers(workshop_env, mlflow_client, tmp_path):
    result = subprocess.run(
        ["bash", str(WORKSHOP / "01_airflow" / "run_dag_test.sh")],
        capture_output=True,
        text=True,
        env={**os.environ, **workshop_env, "AIRFLOW_HOME": str(tmp_path / "airflow"), "TMPDIR": str(tmp_path)},
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "DAG churn_training_pipeline : success" in result.stdout
    experiment = mlflow_client.get_experiment_by_name("churn-airflow")
    runs = mlflow_client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].data.metrics["roc_auc"] > 0.75
    version = mlflow_client.get_model_version_by_alias("churn-airflow", "champion")
    assert version.tags["run_id"] == runs[0].info.run_id
    # The clean-up task removed the working folder the tasks shared (friction F3 of the overview).
    assert not list(tmp_path.glob("churn-airflow-*"))
