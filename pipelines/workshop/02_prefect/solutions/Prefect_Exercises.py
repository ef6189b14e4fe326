"""Exercices Prefect — une solution parmi d'autres (``check`` accepte toute solution qui marche).

Ne l'ouvrez qu'après avoir essayé. Pour la vérifier comme votre propre fichier :

    cd pipelines/workshop/02_prefect
    python Prefect_Exercises.py check --module solutions/Prefect_Exercises.py
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from prefect import flow, task
from prefect.cache_policies import INPUTS

from churn import data, exercises, features, model, pipeline, tracking, workshop

EXPERIMENT = "churn-prefect-exercises"
MODEL_NAME = "churn-prefect-exercises"
# L'API clients répond mal : une fois sur trois, elle échoue (WORKSHOP_FAILURE_RATE pour changer).
SOURCE = workshop.FlakySource(workshop.data_path(), failures=0, failure_rate=workshop.settings().workshop_failure_rate)

# TODO 1 (tasks et flow) : importez `flow` et `task` de prefect, puis décorez chaque étape avec
#   @task et le pipeline avec @flow. Relancez `run` : le pipeline apparaît dans l'UI Prefect.


# TODO 2 (résilience) : l'API échoue une fois sur trois. Donnez à cette task 3 retries, avec des
#   délais qui grandissent entre les tentatives (un backoff).
@task(retries=3, retry_delay_seconds=[10, 30, 60])
def load_customer_data() -> pd.DataFrame:
    return SOURCE.fetch()


@task
def split_data(frame: pd.DataFrame, test_size_ratio: float) -> data.Split:
    return data.split(frame, test_size_ratio)


# TODO 3 (efficacité) : ce calcul est coûteux. Mettez-le en cache selon ses entrées, pour un jour.
@task(cache_policy=INPUTS, cache_expiration=timedelta(days=1))
def engineer_features(raw: pd.DataFrame) -> pd.DataFrame:
    return features.transform_frame(raw)


@task
def train_model(x: pd.DataFrame, y: pd.Series, model_type: str, C: float, n_estimators: int) -> Any:
    return model.train(x, y, model_type, C, n_estimators)  # type: ignore[arg-type]


@task
def evaluate_model(estimator: Any, x: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    return model.evaluate(estimator, x, y)


# TODO 4 (MLflow) : faites de ces deux fonctions des tasks (le pipeline les appelle déjà).
@task
def log_to_mlflow(
    estimator: Any, x_train: pd.DataFrame, metrics: dict[str, float], params: dict[str, Any], model_name: str
) -> tracking.TrainingRun:
    return tracking.log_training_run(estimator, x_train, metrics, params, EXPERIMENT, model_name)


@task
def register_model(run: tracking.TrainingRun, model_name: str) -> str:
    return tracking.register(run, model_name)


# TODO 5 (notifications) : écrivez deux hooks, appelés par Prefect quand le flow réussit et quand il
#   échoue, qui préviennent l'équipe avec workshop.notify("...") (Discord/Slack : DISCORD_WEBHOOK_URL,
#   SLACK_WEBHOOK_URL), et branchez-les sur le flow.
#
# TODO 6 (paramètres typés) : typez les paramètres du flow (model_type limité aux deux choix possibles,
#   C: float, ...) : Prefect les valide avant de lancer le run, et l'UI affiche un formulaire.
def notify_success(flow: Any, flow_run: Any, state: Any) -> None:
    workshop.notify(f"✅ {flow.name} / {flow_run.name} a réussi")


def notify_failure(flow: Any, flow_run: Any, state: Any) -> None:
    workshop.notify(f"❌ {flow.name} / {flow_run.name} a échoué : {state.message}")


@flow(on_completion=[notify_success], on_failure=[notify_failure])
def churn_training_pipeline(
    model_type: Literal["logistic_regression", "random_forest"] = "random_forest",
    C: float = 1.0,
    n_estimators: int = 100,
    test_size_ratio: float = 0.2,
) -> dict[str, Any]:
    workshop.configure_mlflow(EXPERIMENT)
    raw = load_customer_data()
    split = split_data(raw, test_size_ratio)
    x_train, x_test = engineer_features(split.x_train), engineer_features(split.x_test)
    # TODO 7 (parallélisme) : entraînez aussi une régression logistique, EN PARALLÈLE de ce modèle,
    #   et gardez le meilleur des deux (roc_auc).
    other = "logistic_regression" if model_type == "random_forest" else "random_forest"
    futures = [train_model.submit(x_train, split.y_train, kind, C, n_estimators) for kind in (model_type, other)]
    candidates = [(future.result(), kind) for future, kind in zip(futures, (model_type, other), strict=True)]
    scored = [(evaluate_model(estimator, x_test, split.y_test), estimator, kind) for estimator, kind in candidates]
    metrics, estimator, model_type = max(scored, key=lambda candidate: candidate[0]["roc_auc"])
    params = pipeline.training_params(model_type, C, n_estimators, None, test_size_ratio, len(raw))
    run = log_to_mlflow(estimator, x_train, metrics, params, MODEL_NAME)
    version = register_model(run, MODEL_NAME)
    print(f"run {run.run_id} -> {MODEL_NAME} v{version}, ROC AUC {metrics['roc_auc']:.3f}")
    return {"run_id": run.run_id, "version": version, "metrics": metrics}


# TODO 8 (automatisation) : renvoyez un déploiement du flow planifié toutes les 2 minutes, puis, la stack
#   démarrée, enregistrez-le sur le serveur Prefect :
#       python pipelines/workshop/02_prefect/Prefect_Exercises.py deploy
def build_deployment() -> Any:
    return churn_training_pipeline.to_deployment(name="churn-exercises", interval=timedelta(minutes=2))


if __name__ == "__main__":
    sys.exit(exercises.main(Path(__file__)))
