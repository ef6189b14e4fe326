"""Every notebook runs top to bottom (nbclient) against a real MLflow server."""

from __future__ import annotations

import shutil

import nbformat
import pytest
from conftest import DATA, ROOT
from nbclient import NotebookClient

NOTEBOOKS = ["01_messy_notebook", "01b_mlflow_transition", "02_mlflow_organized"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name, workshop_env, monkeypatch, tmp_path, mlflow_client):
    # A copy of the repository's layout: the messy notebook reads ../data/customer_data.csv and
    # writes its pickle next to itself, so nothing lands in the checkout.
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "data").mkdir()
    shutil.copy(DATA, tmp_path / "data" / DATA.name)
    for variable in ("MLFLOW_TRACKING_URI", "CHURN_DATA_PATH"):
        monkeypatch.setenv(variable, workshop_env[variable])
    book = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    # "Run All" shows no solution: they live in notebooks/solutions/, and they run in the notebook's namespace.
    assert not [cell for cell in book.cells if cell.cell_type == "code" and cell.source.startswith("# Solution")]
    solutions = ROOT / "notebooks" / "solutions" / f"{name[:3]}_exercices.py"
    if solutions.exists():
        shutil.copytree(solutions.parent, tmp_path / "notebooks" / "solutions")
        book.cells.append(nbformat.v4.new_code_cell(f"%run -i solutions/{solutions.name}"))
    NotebookClient(
        book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path / "notebooks")}}
    ).execute()
    errors = [output for cell in book.cells for output in cell.get("outputs", []) if output.output_type == "error"]
    assert not errors
    if name == "01b_mlflow_transition":
        champion = mlflow_client.get_model_version_by_alias("churn-notebook", "champion")
        experiment = mlflow_client.get_experiment_by_name("churn-notebook")
        assert mlflow_client.search_runs([experiment.experiment_id], "tags.mlflow.runName = 'exercice-1'")
        served = next(c for c in book.cells if c.cell_type == "code" and "invocations" in c.source)
        assert served.outputs and "predictions" in str(served.outputs[-1])
        # The champion is the best cross-validated configuration; the test set gave its final figure only.
        assert champion_is_best_by_validation(mlflow_client, "churn-notebook", champion)
        assert "test_roc_auc" in mlflow_client.get_run(champion.run_id).data.metrics
        batch = next(c for c in book.cells if c.cell_type == "code" and "batch_predict" in c.source)
        assert "nouveaux clients de clients_2025-01.csv" in str(batch.outputs)  # not the training file
    if name == "02_mlflow_organized":
        assert len(mlflow_client.search_model_versions("name='churn-organized'")) == 3
        champion = mlflow_client.get_model_version_by_alias("churn-organized", "champion")
        assert champion_is_best_by_validation(mlflow_client, "churn-organized", champion)


def champion_is_best_by_validation(client, experiment: str, champion) -> bool:
    """No run of the experiment has a better cross-validated ROC AUC than the champion's run."""
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    validated = [run.data.metrics["cv_roc_auc"] for run in runs if "cv_roc_auc" in run.data.metrics]
    return client.get_run(champion.run_id).data.metrics["cv_roc_auc"] == max(validated)
