"""Le pipeline churn en DAG Airflow (API TaskFlow) — la référence à comparer avec Prefect et Dagster.

    bash pipelines/workshop/01_airflow/run_dag_test.sh    # environnement dédié, base, puis dag.test()

ou, dans un environnement où Airflow est installé (``airflow db migrate`` fait une fois) :

    python pipelines/workshop/01_airflow/Airflow_Pipeline.py

Lisez airflow_overview.md en parallèle : chaque point de friction y est repéré par son numéro (F1...).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

# dag.test() enregistre le DAG depuis le dossier des DAGs : celui-ci, sauf avis contraire (avant d'importer airflow).
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(Path(__file__).resolve().parent))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

import pendulum
from airflow.sdk import dag, task

EXPERIMENT = "churn-airflow"
MODEL_NAME = "churn-airflow"


@dag(
    dag_id="churn_training_pipeline",
    schedule="0 6 * * *",  # tous les jours à 6 h 00
    start_date=pendulum.datetime(2026, 1, 1, tz="Europe/Paris"),
    catchup=False,
    tags=["workshop", "churn"],
    params={"model_type": "logistic_regression", "C": 1.0, "n_estimators": 100, "threshold": 0.75},
    default_args={"retries": 1, "retry_delay": timedelta(seconds=5)},
)
def churn_training_pipeline() -> None:
    """Charger, découper, features, entraîner, évaluer, logger dans MLflow, enregistrer, nettoyer."""

    @task
    def prepare_workdir() -> str:
        """F2 : les tâches ne se passent pas de DataFrames, seulement des petites valeurs (XCom).
        Il faut donc un dossier de travail partagé... et penser à le supprimer (F3)."""
        return tempfile.mkdtemp(prefix="churn-airflow-")

    @task(retries=3, retry_delay=timedelta(seconds=10), retry_exponential_backoff=True)
    def load_data(workdir: str) -> str:
        """F1 : renvoyer le DataFrame ferait passer 2000 lignes par la base de métadonnées (XCom).
        On l'écrit sur disque et on renvoie son chemin."""
        import pandas as pd

        from churn import workshop

        path = Path(workdir) / "raw.pkl"
        pd.read_csv(workshop.data_path()).to_pickle(path)
        return str(path)

    @task
    def split_and_featurize(raw_path: str, workdir: str) -> dict[str, str]:
        """Découpage et features : quatre fichiers de plus, quatre chemins dans un XCom."""
        import pandas as pd

        from churn import data, features

        split = data.split(pd.read_pickle(raw_path))  # noqa: S301 (our own file, written by load_data)
        paths = {name: str(Path(workdir) / f"{name}.pkl") for name in ("x_train", "x_test", "y_train", "y_test")}
        features.transform_frame(split.x_train).to_pickle(paths["x_train"])
        features.transform_frame(split.x_test).to_pickle(paths["x_test"])
        split.y_train.to_pickle(paths["y_train"])
        split.y_test.to_pickle(paths["y_test"])
        return paths

    @task
    def train(paths: dict[str, str], workdir: str, params: dict[str, Any] | None = None) -> str:
        """Le modèle non plus ne passe pas par XCom : joblib sur disque (F1 encore)."""
        import joblib
        import pandas as pd

        from churn import model

        params = params or {}
        estimator = model.train(
            pd.read_pickle(paths["x_train"]),  # noqa: S301
            pd.read_pickle(paths["y_train"]),  # noqa: S301
            params.get("model_type", "logistic_regression"),
            float(params.get("C", 1.0)),
            int(params.get("n_estimators", 100)),
        )
        path = Path(workdir) / "model.joblib"
        joblib.dump(estimator, path)
        return str(path)

    @task
    def evaluate(paths: dict[str, str], model_path: str) -> dict[str, float]:
        """Des métriques : enfin une petite valeur qui tient dans un XCom."""
        import joblib
        import pandas as pd

        from churn import model

        estimator = joblib.load(model_path)
        return model.evaluate(estimator, pd.read_pickle(paths["x_test"]), pd.read_pickle(paths["y_test"]))  # noqa: S301

    @task
    def log_and_register(
        paths: dict[str, str], model_path: str, metrics: dict[str, float], params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """MLflow fait ici ce qu'il fait partout : run, modèle, registre, alias."""
        import joblib
        import pandas as pd

        from churn import pipeline, tracking, workshop

        params = params or {}
        workshop.configure_mlflow(EXPERIMENT)
        x_train = pd.read_pickle(paths["x_train"])  # noqa: S301
        rows = len(x_train) + len(pd.read_pickle(paths["x_test"]))  # noqa: S301
        logged = pipeline.training_params(
            params.get("model_type", "logistic_regression"),
            float(params.get("C", 1.0)),
            int(params.get("n_estimators", 100)),
            None,
            0.2,
            rows,
        )
        run = tracking.log_training_run(joblib.load(model_path), x_train, metrics, logged, EXPERIMENT, MODEL_NAME)
        version = tracking.register(run, MODEL_NAME)
        promotion = tracking.promote(MODEL_NAME, version, threshold=float(params.get("threshold", 0.75)))
        return {"run_id": run.run_id, "version": version, "champion": promotion.approved}

    @task(trigger_rule="all_done")
    def cleanup(workdir: str) -> None:
        """F3 : le ménage, qui doit tourner même si une tâche amont a échoué (trigger_rule)."""
        shutil.rmtree(workdir, ignore_errors=True)

    workdir = prepare_workdir()
    paths = split_and_featurize(load_data(workdir), workdir)
    model_path = train(paths, workdir)
    registered = log_and_register(paths, model_path, evaluate(paths, model_path))
    registered >> cleanup(workdir)


pipeline_dag = churn_training_pipeline()

if __name__ == "__main__":
    dag_run = pipeline_dag.test()
    print(f"DAG {pipeline_dag.dag_id} : {getattr(dag_run, 'state', 'pas de run')}")
    raise SystemExit(0 if getattr(dag_run, "state", None) == "success" else 1)
