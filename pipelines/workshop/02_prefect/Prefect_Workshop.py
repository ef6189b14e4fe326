"""Atelier Prefect — la référence complète (parties 1 à 7 et le déploiement).

    python pipelines/workshop/02_prefect/Prefect_Workshop.py part1    # tasks et flows
    python pipelines/workshop/02_prefect/Prefect_Workshop.py part2    # résilience : retries, backoff
    python pipelines/workshop/02_prefect/Prefect_Workshop.py part3    # efficacité : cache, parallélisme
    python pipelines/workshop/02_prefect/Prefect_Workshop.py part4    # flexibilité : paramètres typés, sous-flows
    python pipelines/workshop/02_prefect/Prefect_Workshop.py part5    # pipeline complet + MLflow
    python pipelines/workshop/02_prefect/Prefect_Workshop.py deploy   # partie 6 : automatisation (alias : part6)
    python pipelines/workshop/02_prefect/Prefect_Workshop.py part7    # notifications Discord / Slack

Le code métier (données, features, modèle, registre) vient du paquet ``churn`` : Prefect ne fait
qu'orchestrer des fonctions Python qui existent déjà. C'est tout l'intérêt.

MLflow : ``MLFLOW_TRACKING_URI`` s'il est défini, sinon le MLflow de la stack Docker
(http://localhost:5000) s'il répond, sinon un fichier ``mlflow.db`` local.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.futures import wait
from prefect.runtime import task_run
from prefect.schedules import Cron, Interval
from pydantic import BaseModel, Field, ValidationError

from churn import data, features, model, pipeline, tracking, workshop

EXPERIMENT = "churn-prefect"
MODEL_NAME = "churn-prefect"
WORK_POOL = "workshop-pool"
DEPLOYMENT = "churn-retrain-every-2-min"
# Ce que "coûte" le feature engineering dans la vraie vie (jointures, agrégations...) : de quoi voir
# l'effet du cache.
EXPENSIVE_SECONDS = workshop.settings().workshop_expensive_seconds
ModelType = Literal["logistic_regression", "random_forest"]


# ---------------------------------------------------------------------------------------------------
# Partie 1 — Tasks et flows : une task est une étape observable, un flow les enchaîne.
# ---------------------------------------------------------------------------------------------------
@task
def load_raw_data() -> pd.DataFrame:
    """Lire la table clients (elle est générée si elle manque)."""
    frame = pd.read_csv(workshop.data_path())
    get_run_logger().info("%d clients chargés", len(frame))
    return frame


@task
def describe(frame: pd.DataFrame) -> dict[str, float]:
    """Quelques chiffres sur la table : le taux de churn est la première chose à regarder."""
    return {"rows": len(frame), "churn_rate": round(float(frame[data.TARGET].mean()), 4)}


@flow(name="part1-tasks-and-flows", log_prints=True)
def part1() -> dict[str, float]:
    """Un flow appelle des tasks comme des fonctions : Prefect trace chaque appel, son état, ses logs."""
    summary = describe(load_raw_data())
    print(f"Résumé : {summary}")
    return summary


# ---------------------------------------------------------------------------------------------------
# Partie 2 — Résilience : une source de données qui tombe en panne, des retries avec backoff.
# ---------------------------------------------------------------------------------------------------
@task(retries=3, retry_delay_seconds=[10, 30, 60], retry_jitter_factor=0.2)
def load_customer_data(source: workshop.FlakySource) -> pd.DataFrame:
    """Appeler l'API clients ; si elle échoue, Prefect réessaie après 10 s, puis 30 s, puis 60 s.

    Variante calculée (``from prefect.tasks import exponential_backoff``) :
    ``retry_delay_seconds=exponential_backoff(backoff_factor=10)`` donne 10, 20, 40 s...
    """
    get_run_logger().info("tentative n°%d", task_run.run_count)
    return source.fetch()


@flow(name="part2-resilience", log_prints=True)
def part2(failures: int = 2, fast: bool = False) -> dict[str, int]:
    """L'API échoue ``failures`` fois puis répond : le flow réussit quand même, grâce aux retries.

    ``fast`` met les délais à 0 s (pour les tests et les démonstrations pressées).
    """
    source = workshop.FlakySource(workshop.data_path(), failures=failures)
    loader = load_customer_data.with_options(retry_delay_seconds=0) if fast else load_customer_data
    frame = loader(source)
    print(f"{len(frame)} lignes reçues après {source.calls} appels à l'API")
    return {"attempts": source.calls, "rows": len(frame)}


# ---------------------------------------------------------------------------------------------------
# Partie 3 — Efficacité : cache du feature engineering, modèles entraînés en parallèle.
# ---------------------------------------------------------------------------------------------------
def content_key(context: Any, parameters: dict[str, Any]) -> str:
    """La clé de cache : le contenu de la table (pas son nom) et le code des features.

    Mêmes données et même code -> même résultat : on le relit. Un fichier modifié, ou une feature
    ajoutée dans churn/features.py, change la clé : on recalcule.
    """
    digest = hashlib.sha256(pd.util.hash_pandas_object(parameters["raw"], index=True).values.tobytes())
    digest.update(Path(features.__file__).read_bytes())
    return f"churn-features-{digest.hexdigest()}"


@task(cache_key_fn=content_key, cache_expiration=timedelta(days=1), persist_result=True)
def engineer_features(raw: pd.DataFrame) -> pd.DataFrame:
    """Les features du modèle (celles que le runner servira) : coûteux, donc mis en cache."""
    time.sleep(EXPENSIVE_SECONDS)
    return features.transform_frame(raw)


@task
def split_data(frame: pd.DataFrame, test_size_ratio: float = 0.2) -> data.Split:
    """Découpage train/test stratifié (random_state fixe : résultats reproductibles)."""
    return data.split(frame, test_size_ratio)


class TrainingConfig(BaseModel):
    """Les hyperparamètres d'un entraînement : typés et validés avant que le flow ne démarre."""

    model_type: ModelType = "logistic_regression"
    C: float = Field(1.0, gt=0)
    n_estimators: int = Field(100, ge=1, le=1000)
    max_depth: int | None = Field(None, ge=1)

    @property
    def label(self) -> str:
        if self.model_type == "random_forest":
            return f"random_forest(n_estimators={self.n_estimators}, max_depth={self.max_depth})"
        return f"logistic_regression(C={self.C})"


@task
def train_model(x: pd.DataFrame, y: pd.Series, config: TrainingConfig) -> Any:
    """Entraîner un modèle scikit-learn selon sa configuration."""
    return model.train(x, y, config.model_type, config.C, config.n_estimators, config.max_depth)


@task
def evaluate_model(estimator: Any, x: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """Accuracy, précision, rappel, F1, ROC AUC sur le jeu de test."""
    return model.evaluate(estimator, x, y)


CANDIDATES = [
    TrainingConfig(model_type="logistic_regression", C=1.0),
    TrainingConfig(model_type="logistic_regression", C=0.1),
    TrainingConfig(model_type="random_forest", n_estimators=100, max_depth=6),
]


@flow(name="part3-efficiency", log_prints=True)
def part3() -> dict[str, Any]:
    """Deux appels au même feature engineering : le second vient du cache. Trois modèles en parallèle."""
    split = split_data(load_raw_data())
    started = time.perf_counter()
    first = engineer_features(split.x_train, return_state=True)
    first_seconds = time.perf_counter() - started
    started = time.perf_counter()
    second = engineer_features(split.x_train, return_state=True)
    second_seconds = time.perf_counter() - started
    print(
        f"features : 1er appel {first.name} en {first_seconds:.1f} s, 2e appel {second.name} en {second_seconds:.1f} s"
    )
    x_train, x_test = first.result(), engineer_features(split.x_test)
    futures = [train_model.submit(x_train, split.y_train, config) for config in CANDIDATES]
    wait(futures)
    scores = {
        config.label: evaluate_model(future.result(), x_test, split.y_test)["roc_auc"]
        for config, future in zip(CANDIDATES, futures, strict=True)
    }
    print(f"ROC AUC des candidats : {scores}")
    return {"first_call": first.name, "second_call": second.name, "scores": scores}


# ---------------------------------------------------------------------------------------------------
# Partie 4 — Flexibilité : paramètres typés, sous-flows.
# ---------------------------------------------------------------------------------------------------
@flow(name="train-one-model")
def train_one_model(config: TrainingConfig, test_size_ratio: float = 0.2) -> dict[str, float]:
    """Un sous-flow : réutilisable seul, ou appelé par un autre flow (il apparaît sous son parent)."""
    split = split_data(load_raw_data(), test_size_ratio)
    x_train, x_test = engineer_features(split.x_train), engineer_features(split.x_test)
    return evaluate_model(train_model(x_train, split.y_train, config), x_test, split.y_test)


@flow(name="part4-flexibility", log_prints=True)
def part4(configs: list[TrainingConfig] | None = None, test_size_ratio: float = 0.2) -> dict[str, Any]:
    """Un balayage d'hyperparamètres : un sous-flow par configuration, le meilleur gagne."""
    try:
        TrainingConfig(model_type="xgboost", C=-1)  # type: ignore[arg-type]
    except ValidationError as error:
        print(f"paramètres refusés avant toute exécution :\n{error}")
    configs = configs or CANDIDATES[:2]
    results = {config.label: train_one_model(config, test_size_ratio) for config in configs}
    best = max(results, key=lambda key: results[key]["roc_auc"])
    print(f"meilleure configuration : {best} (ROC AUC {results[best]['roc_auc']:.4f})")
    return {"results": results, "best": best}


# ---------------------------------------------------------------------------------------------------
# Partie 5 — Le pipeline complet : Prefect orchestre, MLflow garde la trace et versionne le modèle.
# Partie 7 — ses notifications (hooks on_completion / on_failure).
# ---------------------------------------------------------------------------------------------------
@task
def log_to_mlflow(
    estimator: Any, x_train: pd.DataFrame, metrics: dict[str, float], params: dict[str, Any], model_name: str
) -> tracking.TrainingRun:
    """Un run MLflow : paramètres, métriques, modèle (signature, exemple) et preprocessing.py."""
    return tracking.log_training_run(estimator, x_train, metrics, params, EXPERIMENT, model_name)


@task
def register_model(run: tracking.TrainingRun, model_name: str) -> str:
    """Nouvelle version au registre, alias ``candidate-latest``."""
    return tracking.register(run, model_name)


@task
def promote_model(model_name: str, version: str, threshold: float) -> dict[str, Any]:
    """``champion`` passe à cette version si elle atteint le seuil et bat le champion actuel."""
    return tracking.promote(model_name, version, threshold=threshold).as_dict()


def notify_success(flow: Any, flow_run: Any, state: Any) -> None:
    """Hook on_completion : un message sur Discord / Slack (si les URLs sont dans l'environnement)."""
    try:
        result = state.result()
    except Exception:  # le résultat n'est qu'un détail du message
        result = {}
    detail = f" — v{result.get('version')}, ROC AUC {result.get('metrics', {}).get('roc_auc', 0):.3f}" if result else ""
    workshop.notify(f"✅ {flow.name} / {flow_run.name} a réussi{detail}")


def notify_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Hook on_failure : prévenir l'équipe, avec la cause."""
    workshop.notify(f"❌ {flow.name} / {flow_run.name} a échoué : {state.message}")


@flow(name="churn-training-pipeline", log_prints=True, on_completion=[notify_success], on_failure=[notify_failure])
def churn_training_pipeline(
    model_type: ModelType = "logistic_regression",
    C: float = 1.0,
    n_estimators: int = 100,
    max_depth: int | None = None,
    test_size_ratio: float = 0.2,
    threshold: float = 0.75,
    model_name: str = MODEL_NAME,
    source_failures: int = 0,
) -> dict[str, Any]:
    """Charger (avec retries), découper, features (en cache), entraîner, évaluer, logger, enregistrer, promouvoir."""
    print(f"MLflow : {workshop.configure_mlflow(EXPERIMENT)}")
    raw = load_customer_data(workshop.FlakySource(workshop.data_path(), failures=source_failures))
    split = split_data(raw, test_size_ratio)
    x_train, x_test = engineer_features(split.x_train), engineer_features(split.x_test)
    config = TrainingConfig(model_type=model_type, C=C, n_estimators=n_estimators, max_depth=max_depth)
    estimator = train_model(x_train, split.y_train, config)
    metrics = evaluate_model(estimator, x_test, split.y_test)
    params = pipeline.training_params(model_type, C, n_estimators, max_depth, test_size_ratio, len(raw))
    run = log_to_mlflow(estimator, x_train, metrics, params, model_name)
    version = register_model(run, model_name)
    promotion = promote_model(model_name, version, threshold)
    print(f"run {run.run_id} -> {model_name} v{version} ; promotion : {promotion['reason']}")
    return {"run_id": run.run_id, "version": version, "metrics": metrics, "promotion": promotion}


def part7() -> dict[str, str]:
    """Un succès, puis un vrai échec (un paramètre impossible) : chacun déclenche son hook."""
    sent = {
        "success": churn_training_pipeline(return_state=True).name,
        "failure": churn_training_pipeline(test_size_ratio=1.5, return_state=True).name,
    }
    config = workshop.settings()
    configured = [
        name for name, url in (("Discord", config.discord_webhook_url), ("Slack", config.slack_webhook_url)) if url
    ]
    print(f"états : {sent} ; webhooks configurés : {configured or 'aucun (voir .env.example)'}")
    return sent


# ---------------------------------------------------------------------------------------------------
# Partie 6 — Automatisation : un déploiement planifié, exécuté par le worker sans personne.
# ---------------------------------------------------------------------------------------------------
def build_deployment(interval_seconds: float = 120, cron: str = "0 6 * * *", name: str = DEPLOYMENT) -> Any:
    """Le déploiement : toutes les 2 minutes (démonstration) et, en pause, le cron de production 6 h 00.

    Le worker importe le flow par son module (``Prefect_Workshop``) : le même code marche depuis
    votre machine et dans le conteneur ``prefect-worker``, quel que soit le chemin du dépôt.
    """
    from prefect.types.entrypoint import EntrypointType

    deployment = churn_training_pipeline.to_deployment(
        name=name,
        schedules=[
            Interval(timedelta(seconds=interval_seconds)),
            Cron(cron, timezone="Europe/Paris", active=False),
        ],
        entrypoint_type=EntrypointType.MODULE_PATH,
        tags=["workshop", "churn"],
        description="Réentraînement planifié du modèle de churn (atelier MLflow + Prefect).",
    )
    deployment.entrypoint = "Prefect_Workshop.churn_training_pipeline"
    return deployment


def ensure_work_pool(name: str = WORK_POOL) -> None:
    """Le work pool de type process que le worker écoute (créé s'il n'existe pas)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=name, type="process"))


def deploy(interval_seconds: float, cron: str, pool: str, serve: bool) -> str:
    """Enregistrer le déploiement (worker) ou le servir depuis ce processus (``--serve``, Ctrl+C pour arrêter)."""
    deployment = build_deployment(interval_seconds, cron)
    if serve:
        from prefect import serve as serve_deployments

        # Chaque run s'exécute dans un sous-processus qui importe Prefect_Workshop : ce dossier doit y être visible.
        here = str(Path(__file__).resolve().parent)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
        serve_deployments(deployment)
        return deployment.name
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        # Sans serveur, Prefect en démarrerait un temporaire : le déploiement disparaîtrait avec ce script.
        raise SystemExit(
            "PREFECT_API_URL n'est pas défini : aucun serveur Prefect où enregistrer le déploiement.\n"
            "Démarrez la stack (docker compose up -d) puis : export PREFECT_API_URL=http://localhost:4200/api\n"
            "(ou, sans serveur : deploy --serve, qui exécute les runs planifiés depuis ce terminal)."
        )
    ensure_work_pool(pool)
    deployment_id = deployment.apply(work_pool_name=pool)
    print(
        f"déploiement '{deployment.flow_name}/{deployment.name}' ({deployment_id}) enregistré sur le pool {pool!r} :"
        f" une exécution toutes les {interval_seconds:g} s, cron '{cron}' en pause.\n"
        f"Le worker l'exécute : `prefect worker start --pool {pool}` (ou le service prefect-worker de la stack)."
    )
    return str(deployment_id)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("part1", "part3", "part4", "part5", "part7"):
        commands.add_parser(name)
    retry = commands.add_parser("part2")
    retry.add_argument("--failures", type=int, default=2, help="échecs de l'API avant qu'elle réponde")
    retry.add_argument("--fast", action="store_true", help="délais de retry à 0 s")
    deployer = commands.add_parser("deploy", aliases=["part6"], help="partie 6 : déploiement planifié")
    deployer.add_argument("--interval", type=float, default=120, help="secondes entre deux exécutions (120)")
    deployer.add_argument("--cron", default="0 6 * * *", help="planification cron de production (en pause)")
    deployer.add_argument("--pool", default=WORK_POOL, help="work pool du worker")
    deployer.add_argument("--serve", action="store_true", help="exécuter ici, sans worker (Ctrl+C pour arrêter)")
    args = parser.parse_args(argv)
    if args.command in ("deploy", "part6"):
        deploy(args.interval, args.cron, args.pool, args.serve)
        return 0
    parts = {"part1": part1, "part3": part3, "part4": part4, "part5": churn_training_pipeline, "part7": part7}
    result = part2(args.failures, args.fast) if args.command == "part2" else parts[args.command]()
    print(json.dumps(result, ensure_ascii=False, default=str))  # la dernière ligne : le résultat, en JSON
    return 0


if __name__ == "__main__":
    sys.exit(main())
