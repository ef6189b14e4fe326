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


@task(cache_key_fn=content_key, cache_expiration=timedelta(hours=1), persist_result=True)
def engineer_features(raw: pd.DataFrame) -> pd.DataFrame:
    """Les features du modèle (celles que le runner servira) : coûteux, donc mis en cache (une heure)."""
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
    """Accuracy, précision, rappel, F1, ROC AUC sur le jeu de test (une seule fois, pour le modèle choisi)."""
    return model.evaluate(estimator, x, y)


@task
def cross_validate_model(x: pd.DataFrame, y: pd.Series, config: TrainingConfig) -> dict[str, float]:
    """ROC AUC en validation croisée (5 plis) sur le seul jeu d'entraînement : sa moyenne et son écart-type.

    C'est sur ce chiffre qu'on choisit un modèle. Le jeu de test ne sert qu'à la fin, une fois, pour
    annoncer le score du modèle retenu : choisir sur le test, c'est se mesurer avec la règle qu'on a
    soi-même ajustée.
    """
    return model.cross_validate(x, y, config.model_type, config.C, config.n_estimators, config.max_depth)


def best_by_validation(results: dict[str, dict[str, float]]) -> str:
    """La configuration à la meilleure ROC AUC de validation croisée ; dit si l'écart dépasse le bruit."""
    ranked = sorted(results, key=lambda label: results[label]["cv_roc_auc"], reverse=True)
    best = ranked[0]
    if len(ranked) > 1:
        gap = results[best]["cv_roc_auc"] - results[ranked[1]]["cv_roc_auc"]
        noise = results[best]["cv_roc_auc_std"]
        verdict = "au-delà" if gap > noise else "en deçà"
        print(f"écart avec le 2e : {gap:.4f}, {verdict} du bruit entre plis (écart-type {noise:.4f})")
    return best


CANDIDATES = [
    TrainingConfig(model_type="logistic_regression", C=1.0),
    TrainingConfig(model_type="logistic_regression", C=0.1),
    TrainingConfig(model_type="random_forest", n_estimators=100, max_depth=6),
]


@flow(name="part3-efficiency", log_prints=True)
def part3() -> dict[str, Any]:
    """Deux appels au même feature engineering : le second vient du cache. Trois modèles en parallèle.

    Le premier appel force le recalcul (``refresh_cache=True``) : sans cela, un run précédent aurait
    déjà rempli le cache (clé = contenu des données, gardée une heure) et les deux appels seraient
    « Cached ». Ici on voit, à chaque exécution, un vrai calcul puis une vraie lecture du cache.
    """
    split = split_data(load_raw_data())
    started = time.perf_counter()
    first = engineer_features.with_options(refresh_cache=True)(split.x_train, return_state=True)
    first_seconds = time.perf_counter() - started
    started = time.perf_counter()
    second = engineer_features(split.x_train, return_state=True)
    second_seconds = time.perf_counter() - started
    print(
        f"features : 1er appel {first.name} en {first_seconds:.1f} s, 2e appel {second.name} en {second_seconds:.1f} s"
    )
    x_train, x_test = first.result(), engineer_features(split.x_test)
    futures = [cross_validate_model.submit(x_train, split.y_train, config) for config in CANDIDATES]
    wait(futures)
    results = {config.label: future.result() for config, future in zip(CANDIDATES, futures, strict=True)}
    for label, result in results.items():
        print(f"{label} : ROC AUC (validation croisée) {result['cv_roc_auc']:.4f} ± {result['cv_roc_auc_std']:.4f}")
    best = best_by_validation(results)
    config = next(config for config in CANDIDATES if config.label == best)
    test = evaluate_model(train_model(x_train, split.y_train, config), x_test, split.y_test)["roc_auc"]
    print(f"retenu : {best} ; son score final sur le jeu de test (vu une seule fois) : {test:.4f}")
    scores = {label: round(result["cv_roc_auc"], 4) for label, result in results.items()}
    return {"first_call": first.name, "second_call": second.name, "scores": scores, "best": best, "test_roc_auc": test}


# ---------------------------------------------------------------------------------------------------
# Partie 4 — Flexibilité : paramètres typés, sous-flows.
# ---------------------------------------------------------------------------------------------------
@flow(name="train-one-model")
def train_one_model(config: TrainingConfig, test_size_ratio: float = 0.2) -> dict[str, float]:
    """Un sous-flow : réutilisable seul, ou appelé par un autre flow (il apparaît sous son parent).

    Il renvoie le score de validation croisée sur l'entraînement : le test reste de côté.
    """
    split = split_data(load_raw_data(), test_size_ratio)
    return cross_validate_model(engineer_features(split.x_train), split.y_train, config)


@flow(name="part4-flexibility", log_prints=True)
def part4(configs: list[TrainingConfig] | None = None, test_size_ratio: float = 0.2) -> dict[str, Any]:
    """Un balayage d'hyperparamètres : un sous-flow par configuration, le meilleur gagne."""
    try:
        TrainingConfig(model_type="xgboost", C=-1)  # type: ignore[arg-type]
    except ValidationError as error:
        print(f"paramètres refusés avant toute exécution :\n{error}")
    configs = configs or CANDIDATES[:2]
    results = {config.label: train_one_model(config, test_size_ratio) for config in configs}
    best = best_by_validation(results)
    print(f"meilleure configuration (validation croisée) : {best} (ROC AUC {results[best]['cv_roc_auc']:.4f})")
    return {"results": results, "best": best}


# ---------------------------------------------------------------------------------------------------
# Partie 5 — Le pipeline complet : Prefect orchestre, MLflow garde la trace et versionne le modèle.
# Partie 7 — ses notifications (hooks on_completion / on_failure).
# ---------------------------------------------------------------------------------------------------
@task
def publish_next_month() -> str | None:
    """Simuler le temps qui passe : le mois suivant arrive dans le flux (aucun après le dernier mois)."""
    published = workshop.customer_feed().publish_next()
    print(f"nouveau mois publié : {published}" if published else "plus de nouveau mois : fin de l'historique")
    return published


@task
def split_months(frame: pd.DataFrame, holdout_ratio: float = 0.5) -> data.Split:
    """Entraînement : tous les mois passés et une moitié du dernier ; holdout : l'autre moitié du dernier mois."""
    return data.split_newest_month(frame, holdout_ratio)


@task
def log_to_mlflow(
    estimator: Any,
    x_train: pd.DataFrame,
    metrics: dict[str, float],
    params: dict[str, Any],
    model_name: str,
    training_data: pd.DataFrame,
) -> tracking.TrainingRun:
    """Un run MLflow : paramètres, métriques, modèle (signature, exemple), preprocessing.py et le jeu de données."""
    return tracking.log_training_run(
        estimator, x_train, metrics, params, EXPERIMENT, model_name, training_data=training_data
    )


@task
def register_model(run: tracking.TrainingRun, model_name: str, month: str) -> str:
    """Nouvelle version au registre, alias ``candidate-latest``, étiquetée avec le dernier mois vu."""
    return tracking.register(run, model_name, tags={"data_month": month})


@task
def promote_model(
    model_name: str, version: str, threshold: float, min_gain: float, holdout: tuple[pd.DataFrame, pd.Series]
) -> dict[str, Any]:
    """Champion et challenger notés sur le même holdout (le dernier mois) ; promotion au-delà du gain minimal."""
    return tracking.promote(model_name, version, threshold=threshold, holdout=holdout, min_gain=min_gain).as_dict()


@task
def publish_report(month: str, cv: dict[str, float], metrics: dict[str, float], promotion: dict[str, Any]) -> None:
    """Un artefact Markdown dans l'UI Prefect (onglet Artifacts) : le tableau des métriques de ce mois."""
    from prefect.artifacts import create_markdown_artifact

    comparison = promotion.get("comparison") or {}
    rows = [
        ("ROC AUC validation croisée (entraînement)", f"{cv['cv_roc_auc']:.4f} ± {cv['cv_roc_auc_std']:.4f}"),
        ("ROC AUC holdout (challenger)", f"{metrics['roc_auc']:.4f}"),
        ("ROC AUC holdout (champion actuel)", f"{comparison['champion_auc']:.4f}" if comparison else "—"),
        (
            "gain, intervalle à 90 %",
            f"{comparison['gain']:+.4f} [{comparison['low']:+.4f}, {comparison['high']:+.4f}]" if comparison else "—",
        ),
        ("décision", "promu champion" if promotion["approved"] else "rejeté"),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    create_markdown_artifact(
        key="churn-metrics",
        markdown=f"## Mois {month}, version {promotion['version']}\n\n| Métrique | Valeur |\n|---|---|\n{table}\n\n"
        f"{promotion['reason']}\n",
        description=f"Métriques du réentraînement sur les mois jusqu'à {month}",
    )


def notify_success(flow: Any, flow_run: Any, state: Any) -> None:
    """Hook on_completion : un message sur Discord / Slack (si les URLs sont dans l'environnement)."""
    try:
        result = state.result()
    except Exception:  # le résultat n'est qu'un détail du message
        result = {}
    if result.get("skipped"):
        detail = f" — rien de nouveau depuis {result.get('month')}, aucune version enregistrée"
    elif result:
        detail = f" — v{result.get('version')}, ROC AUC {result.get('metrics', {}).get('roc_auc', 0):.3f}"
    else:
        detail = ""
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
    test_size_ratio: float = 0.5,
    threshold: float = 0.75,
    min_gain: float = 0.01,
    model_name: str = MODEL_NAME,
    source_failures: int = 0,
    new_month: bool = False,
) -> dict[str, Any]:
    """Le réentraînement mensuel : charger les mois publiés (avec retries), découper, features (en cache),
    valider, entraîner, évaluer, logger, enregistrer, promouvoir.

    ``new_month`` publie d'abord le mois suivant (le déploiement planifié simule ainsi le temps qui
    passe). Si le dernier mois publié a déjà servi à entraîner une version, le run s'arrête là : même
    données, même modèle, rien à enregistrer. ``test_size_ratio`` : la part du dernier mois gardée
    comme holdout.
    """
    print(f"MLflow : {workshop.configure_mlflow(EXPERIMENT)}")
    feed = workshop.customer_feed()
    if new_month:
        publish_next_month()
    feed.ensure_started()
    raw = load_customer_data(workshop.FlakySource(feed.folder, failures=source_failures))
    split = split_months(raw, test_size_ratio)
    month = str(raw[data.MONTH].max())
    if month in tracking.trained_months(model_name):
        print(f"aucun nouveau mois depuis {month} : mêmes données, rien à entraîner ni à enregistrer")
        return {"skipped": True, "month": month, "months": sorted(raw[data.MONTH].unique().tolist())}
    x_train, x_test = engineer_features(split.x_train), engineer_features(split.x_test)
    config = TrainingConfig(model_type=model_type, C=C, n_estimators=n_estimators, max_depth=max_depth)
    cv = cross_validate_model(x_train, split.y_train, config)
    estimator = train_model(x_train, split.y_train, config)
    metrics = evaluate_model(estimator, x_test, split.y_test)
    params = {
        **pipeline.training_params(model_type, C, n_estimators, max_depth, test_size_ratio, len(raw)),
        "data_month": month,
        "months": raw[data.MONTH].nunique(),
        "min_gain": min_gain,
    }
    training_data = pd.concat([split.x_train, split.y_train], axis=1)
    run = log_to_mlflow(estimator, x_train, {**metrics, **cv}, params, model_name, training_data)
    version = register_model(run, model_name, month)
    promotion = promote_model(model_name, version, threshold, min_gain, (x_test, split.y_test))
    publish_report(month, cv, metrics, promotion)
    print(f"mois {month} : run {run.run_id} -> {model_name} v{version} ; promotion : {promotion['reason']}")
    return {
        "skipped": False,
        "month": month,
        "run_id": run.run_id,
        "version": version,
        "metrics": metrics,
        "cv": cv,
        "promotion": promotion,
    }


def part7() -> dict[str, str]:
    """Un succès, puis un vrai échec (un paramètre impossible) : chacun déclenche son hook."""
    sent = {
        "success": churn_training_pipeline(new_month=True, return_state=True).name,
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
def build_deployment(
    interval_seconds: float = 120, cron: str = "0 6 * * *", name: str = DEPLOYMENT, new_month: bool = True
) -> Any:
    """Le déploiement : toutes les 2 minutes (démonstration) et, en pause, le cron de production 6 h 00.

    Chaque run planifié fait d'abord arriver un nouveau mois (``new_month``) : en 12 minutes, six mois
    de clients, la hausse des prix au 3e, et des promotions qu'on voit se décider dans MLflow. Ensuite,
    plus rien de nouveau : les runs le disent et n'enregistrent rien. Un seul run à la fois
    (``concurrency_limit=1``) : deux runs simultanés publieraient le même mois.

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
        parameters={"new_month": new_month},
        concurrency_limit=1,
        paused=False,  # déployer à nouveau relance ce que `python -m churn reset` a mis en pause
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


def deploy(interval_seconds: float, cron: str, pool: str, serve: bool, new_month: bool = True) -> str:
    """Enregistrer le déploiement (worker) ou le servir depuis ce processus (``--serve``, Ctrl+C pour arrêter)."""
    deployment = build_deployment(interval_seconds, cron, new_month=new_month)
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
        f"Le worker l'exécute : `prefect worker start --pool {pool}` (ou le service prefect-worker de la stack).\n"
        f"Pour l'arrêter : `prefect deployment pause '{deployment.flow_name}/{deployment.name}'` ; entre deux"
        " séances : `python -m churn reset` (met en pause les planifications, vide MLflow et le cache)."
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
    deployer.add_argument(
        "--no-new-month",
        dest="new_month",
        action="store_false",
        help="les runs n'avancent pas le temps : le formateur publie les mois (python -m churn feed next)",
    )
    args = parser.parse_args(argv)
    if args.command in ("deploy", "part6"):
        deploy(args.interval, args.cron, args.pool, args.serve, args.new_month)
        return 0
    parts = {"part1": part1, "part3": part3, "part4": part4, "part5": churn_training_pipeline, "part7": part7}
    result = part2(args.failures, args.fast) if args.command == "part2" else parts[args.command]()
    print(json.dumps(result, ensure_ascii=False, default=str))  # la dernière ligne : le résultat, en JSON
    return 0


if __name__ == "__main__":
    sys.exit(main())
