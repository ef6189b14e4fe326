"""Exercices Prefect — le fil rouge : blinder pas à pas le pipeline churn.

Le pipeline ci-dessous marche déjà... en Python pur : pas de retries quand l'API clients tombe, pas de
cache, un seul modèle à la fois, aucune trace dans Prefect. Complétez les TODO dans l'ordre (de 1 à 8,
de haut en bas), puis :

    python pipelines/workshop/02_prefect/Prefect_Exercises.py run              # exécuter le pipeline tel qu'il est
    python pipelines/workshop/02_prefect/Prefect_Exercises.py check            # ce qui marche, ce qui manque
    python pipelines/workshop/02_prefect/Prefect_Exercises.py check --indice 2 # des indices plus précis (jusqu'à 3)
    python pipelines/workshop/02_prefect/Prefect_Exercises.py check --todo 3   # un seul TODO
    python pipelines/workshop/02_prefect/Prefect_Exercises.py deploy           # TODO 8 : enregistrer le déploiement

``check`` exécute votre code et regarde ce que fait Prefect (retries observés, états Cached, entraînements
qui se chevauchent, notifications reçues, déploiement enregistré) : toute solution qui marche est acceptée.
Une solution est dans solutions/Prefect_Exercises.py : ne l'ouvrez qu'après avoir essayé.
"""

from __future__ import annotations

import sys
from datetime import timedelta  # noqa: F401 (pour les TODO 3 et 8)
from pathlib import Path
from typing import Any

import pandas as pd

from churn import data, exercises, features, model, pipeline, tracking, workshop

EXPERIMENT = "churn-prefect-exercises"
MODEL_NAME = "churn-prefect-exercises"
# L'API clients répond mal : une fois sur trois, elle échoue (WORKSHOP_FAILURE_RATE pour changer).
SOURCE = workshop.FlakySource(workshop.data_path(), failures=0, failure_rate=workshop.settings().workshop_failure_rate)

# TODO 1 (tasks et flow) : importez `flow` et `task` de prefect, puis décorez chaque étape avec
#   @task et le pipeline avec @flow. Relancez `run` : le pipeline apparaît dans l'UI Prefect.


# TODO 2 (résilience) : l'API échoue une fois sur trois. Donnez à cette task 3 retries, avec des
#   délais qui grandissent entre les tentatives (un backoff).
def load_customer_data() -> pd.DataFrame:
    return SOURCE.fetch()


def split_data(frame: pd.DataFrame, test_size_ratio: float) -> data.Split:
    return data.split(frame, test_size_ratio)


# TODO 3 (efficacité) : ce calcul est coûteux. Mettez-le en cache selon ses entrées, pour un jour.
def engineer_features(raw: pd.DataFrame) -> pd.DataFrame:
    return features.transform_frame(raw)


def train_model(x: pd.DataFrame, y: pd.Series, model_type: str, C: float, n_estimators: int) -> Any:
    return model.train(x, y, model_type, C, n_estimators)  # type: ignore[arg-type]


def evaluate_model(estimator: Any, x: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    return model.evaluate(estimator, x, y)


# TODO 4 (MLflow) : faites de ces deux fonctions des tasks (le pipeline les appelle déjà).
def log_to_mlflow(
    estimator: Any, x_train: pd.DataFrame, metrics: dict[str, float], params: dict[str, Any], model_name: str
) -> tracking.TrainingRun:
    return tracking.log_training_run(estimator, x_train, metrics, params, EXPERIMENT, model_name)


def register_model(run: tracking.TrainingRun, model_name: str) -> str:
    return tracking.register(run, model_name)


# TODO 5 (notifications) : écrivez deux hooks, appelés par Prefect quand le flow réussit et quand il
#   échoue, qui préviennent l'équipe avec workshop.notify("...") (Discord/Slack : DISCORD_WEBHOOK_URL,
#   SLACK_WEBHOOK_URL), et branchez-les sur le flow.
#
# TODO 6 (paramètres typés) : typez les paramètres du flow (model_type limité aux deux choix possibles,
#   C: float, ...) : Prefect les valide avant de lancer le run, et l'UI affiche un formulaire.
def churn_training_pipeline(model_type="random_forest", C=1.0, n_estimators=100, test_size_ratio=0.2):
    workshop.configure_mlflow(EXPERIMENT)
    raw = load_customer_data()
    split = split_data(raw, test_size_ratio)
    x_train, x_test = engineer_features(split.x_train), engineer_features(split.x_test)
    # TODO 7 (parallélisme) : entraînez aussi une régression logistique, EN PARALLÈLE de ce modèle,
    #   et gardez le meilleur des deux (roc_auc).
    estimator = train_model(x_train, split.y_train, model_type, C, n_estimators)
    metrics = evaluate_model(estimator, x_test, split.y_test)
    params = pipeline.training_params(model_type, C, n_estimators, None, test_size_ratio, len(raw))
    run = log_to_mlflow(estimator, x_train, metrics, params, MODEL_NAME)
    version = register_model(run, MODEL_NAME)
    print(f"run {run.run_id} -> {MODEL_NAME} v{version}, ROC AUC {metrics['roc_auc']:.3f}")
    return {"run_id": run.run_id, "version": version, "metrics": metrics}


# TODO 8 (automatisation) : renvoyez un déploiement du flow planifié toutes les 2 minutes, puis, la stack
#   démarrée, enregistrez-le sur le serveur Prefect :
#       python pipelines/workshop/02_prefect/Prefect_Exercises.py deploy
def build_deployment() -> Any:
    return None


if __name__ == "__main__":
    sys.exit(exercises.main(Path(__file__)))
