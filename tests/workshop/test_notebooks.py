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
        assert mlflow_client.get_model_version_by_alias("churn-notebook", "champion") is not None
        experiment = mlflow_client.get_experiment_by_name("churn-notebook")
        assert mlflow_client.search_runs([experiment.experiment_id], "tags.mlflow.runName = 'exercice-1'")
        served = next(c for c in book.cells if c.cell_type == "code" and "invocations" in c.source)
        assert served.outputs and "predictions" in str(served.outputs[-1])
    if name == "02_mlflow_organized":
        assert len(mlflow_client.search_model_versions("name='churn-organized'")) == 3
