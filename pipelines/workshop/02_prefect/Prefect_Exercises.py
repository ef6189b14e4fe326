"""Exercices Prefect — le fil rouge : blinder pas à pas le pipeline churn.

Le pipeline ci-dessous marche déjà... en Python pur : pas de retries quand l'API clients tombe, pas de
cache, un seul modèle à la fois, aucune trace dans Prefect. Complétez les TODO dans l'ordre, puis :

    python pipelines/workshop/02_prefect/Prefect_Exercises.py run     # exécuter le pipeline tel qu'il est
    python pipelines/workshop/02_prefect/Prefect_Exercises.py check   # ce qui est fait, ce qui manque

La solution complète est dans Prefect_Workshop.py (mêmes noms de fonctions) : ne l'ouvrez qu'après
avoir essayé. ``check --module Prefect_Workshop`` vérifie la référence elle-même.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from churn import data, features, model, pipeline, tracking, workshop

EXPERIMENT = "churn-prefect-exercises"
MODEL_NAME = "churn-prefect-exercises"
# L'API clients répond mal : une fois sur trois, elle échoue (WORKSHOP_FAILURE_RATE pour changer).
SOURCE = workshop.FlakySource(workshop.data_path(), failures=0, failure_rate=workshop.settings().workshop_failure_rate)

# TODO 1 (tasks et flow) : importez `flow` et `task` de prefect, puis décorez chaque étape avec
#   @task et le pipeline avec @flow. Relancez `run` : le pipeline apparaît dans l'UI Prefect.


# TODO 2 (résilience) : l'API échoue une fois sur trois. Donnez à cette task 3 retries avec un
#   backoff : @task(retries=3, retry_delay_seconds=[10, 30, 60]).
def load_customer_data() -> pd.DataFrame:
    return SOURCE.fetch()


def split_data(frame: pd.DataFrame, test_size_ratio: float) -> data.Split:
    return data.split(frame, test_size_ratio)


# TODO 3 (efficacité) : ce calcul est coûteux. Mettez-le en cache selon ses entrées :
#   @task(cache_policy=INPUTS, cache_expiration=timedelta(days=1))   (from prefect.cache_policies import INPUTS)
#   ou une cache_key_fn qui hache le contenu du DataFrame (voir content_key dans la référence).
def engineer_features(raw: pd.DataFrame) -> pd.DataFrame:
    return features.transform_frame(raw)


def train_model(x: pd.DataFrame, y: pd.Series, model_type: str, C: float, n_estimators: int) -> Any:
    return model.train(x, y, model_type, C, n_estimators)  # type: ignore[arg-type]


def evaluate_model(estimator: Any, x: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    return model.evaluate(estimator, x, y)


# TODO 6 (MLflow) : faites de ces deux fonctions des tasks, et appelez-les dans le pipeline.
def log_to_mlflow(
    estimator: Any, x_train: pd.DataFrame, metrics: dict[str, float], params: dict[str, Any], model_name: str
) -> tracking.TrainingRun:
    return tracking.log_training_run(estimator, x_train, metrics, params, EXPERIMENT, model_name)


def register_model(run: tracking.TrainingRun, model_name: str) -> str:
    return tracking.register(run, model_name)


# TODO 8 (notifications) : écrivez deux hooks `def notify_success(flow, flow_run, state)` et
#   `notify_failure(...)` qui appellent workshop.notify("...") (Discord/Slack via DISCORD_WEBHOOK_URL et
#   SLACK_WEBHOOK_URL), puis @flow(on_completion=[notify_success], on_failure=[notify_failure]).
#
# TODO 5 (paramètres typés) : typez les paramètres du flow (model_type: Literal[...], C: float, ...) :
#   Prefect les valide avant de lancer le run, et l'UI affiche un formulaire.
def churn_training_pipeline(model_type="random_forest", C=1.0, n_estimators=100, test_size_ratio=0.2):
    workshop.configure_mlflow(EXPERIMENT)
    raw = load_customer_data()
    split = split_data(raw, test_size_ratio)
    x_train, x_test = engineer_features(split.x_train), engineer_features(split.x_test)
    # TODO 4 (parallélisme) : entraînez aussi une régression logistique, EN PARALLÈLE de ce modèle :
    #   future = train_model.submit(...) pour chaque candidat, puis future.result(). Gardez le meilleur.
    estimator = train_model(x_train, split.y_train, model_type, C, n_estimators)
    metrics = evaluate_model(estimator, x_test, split.y_test)
    params = pipeline.training_params(model_type, C, n_estimators, None, test_size_ratio, len(raw))
    run = log_to_mlflow(estimator, x_train, metrics, params, MODEL_NAME)
    version = register_model(run, MODEL_NAME)
    print(f"run {run.run_id} -> {MODEL_NAME} v{version}, ROC AUC {metrics['roc_auc']:.3f}")
    return {"run_id": run.run_id, "version": version, "metrics": metrics}


# TODO 7 (automatisation) : renvoyez un déploiement planifié toutes les 2 minutes :
#   return churn_training_pipeline.to_deployment(name="churn-exercises", interval=timedelta(minutes=2))
#   puis enregistrez-le avec build_deployment().apply(work_pool_name="workshop-pool").
def build_deployment() -> Any:
    return None


# ---------------------------------------------------------------------------------------------------
# La vérification : ne modifiez pas ce qui suit.
# ---------------------------------------------------------------------------------------------------
STEPS = ("load_customer_data", "split_data", "engineer_features", "train_model", "evaluate_model")


def _is_task(value: Any) -> bool:
    return type(value).__name__ == "Task"


def _is_flow(value: Any) -> bool:
    return type(value).__name__ == "Flow"


def _calls(tree: ast.AST, attribute: str) -> bool:
    """Does the code (not its comments) call ``something.<attribute>(...)``?"""
    return any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == attribute
        for node in ast.walk(tree)
    )


def _cached(value: Any) -> bool:
    from prefect.cache_policies import DEFAULT, NO_CACHE

    policy = getattr(value, "cache_policy", None)
    return getattr(value, "cache_key_fn", None) is not None or policy not in (None, DEFAULT, NO_CACHE)


def _interval_seconds(deployment: Any) -> list[float]:
    seconds = []
    for schedule in getattr(deployment, "schedules", None) or []:
        interval = getattr(getattr(schedule, "schedule", schedule), "interval", None)
        if isinstance(interval, timedelta):
            seconds.append(interval.total_seconds())
    return seconds


def check(module: Any) -> list[tuple[str, bool, str]]:
    """Each exercise: (title, done, what is still missing)."""
    tree = ast.parse(inspect.getsource(module))
    pipeline_flow = getattr(module, "churn_training_pipeline", None)
    fn = getattr(pipeline_flow, "fn", pipeline_flow)
    signature = inspect.signature(fn) if fn else None
    loader = getattr(module, "load_customer_data", None)
    hooks = (getattr(pipeline_flow, "on_completion_hooks", []), getattr(pipeline_flow, "on_failure_hooks", []))
    try:
        deployment = module.build_deployment()
    except Exception as error:  # the student's code: report, do not crash the checker
        deployment = error
    untyped = [name for name, p in (signature.parameters.items() if signature else []) if p.annotation is p.empty]
    return [
        (
            "1. tasks et flow",
            all(_is_task(getattr(module, name, None)) for name in STEPS) and _is_flow(pipeline_flow),
            "décorer "
            + ", ".join(n for n in STEPS if not _is_task(getattr(module, n, None)))
            + " avec @task"
            + ("" if _is_flow(pipeline_flow) else " et churn_training_pipeline avec @flow"),
        ),
        (
            "2. retries avec backoff",
            _is_task(loader) and loader.retries >= 3 and list(loader.retry_delay_seconds or []) == [10, 30, 60],
            "load_customer_data : @task(retries=3, retry_delay_seconds=[10, 30, 60])",
        ),
        (
            "3. cache du feature engineering",
            _is_task(getattr(module, "engineer_features", None)) and _cached(module.engineer_features),
            "engineer_features : cache_policy=INPUTS ou cache_key_fn=...",
        ),
        (
            "4. entraînements en parallèle",
            _calls(tree, "submit"),
            "appeler train_model.submit(...) pour chaque candidat",
        ),
        (
            "5. paramètres typés",
            signature is not None and len(signature.parameters) >= 3 and not untyped,
            f"annoter les paramètres de churn_training_pipeline : {', '.join(untyped) or 'aucun paramètre'}",
        ),
        (
            "6. suivi MLflow en tasks",
            _is_task(getattr(module, "log_to_mlflow", None)) and _is_task(getattr(module, "register_model", None)),
            "décorer log_to_mlflow et register_model avec @task",
        ),
        (
            "7. déploiement planifié",
            120.0 in _interval_seconds(deployment),
            f"build_deployment() doit renvoyer un déploiement toutes les 2 minutes (renvoie {deployment!r:.80})",
        ),
        (
            "8. notifications",
            bool(hooks[0]) and bool(hooks[1]),
            "@flow(on_completion=[notify_success], on_failure=[notify_failure])",
        ),
    ]


def report(module_name: str) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    module = sys.modules[__name__] if module_name == Path(__file__).stem else importlib.import_module(module_name)
    return workshop.report(check(module))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("run", "check"))
    parser.add_argument("--module", default=Path(__file__).stem, help="module à vérifier (défaut : ce fichier)")
    args = parser.parse_args(argv)
    if args.command == "check":
        return 1 if report(args.module) else 0
    print(churn_training_pipeline())
    return 0


if __name__ == "__main__":
    sys.exit(main())
