"""``python -m churn reset``: the trainer's clean slate between a rehearsal and the class.

Pauses every Prefect schedule (a worker left running would otherwise keep training), deletes the
Prefect flow runs, empties Prefect's result cache and the local caches (monthly feed, Dagster
storage), and empties the MLflow store: registered models, logged models and runs. Experiments stay
(empty): MLflow keeps a deleted experiment's name reserved, and the scripts would then fail to
create it again.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from churn import workshop


def reset_prefect() -> list[str]:
    """Pause deployments and their schedules, delete flow runs; what was done, in French."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return ["Prefect : PREFECT_API_URL n'est pas défini, pas de serveur à remettre à zéro (rien à mettre en pause)"]
    from prefect.client.orchestration import get_client

    paused, deleted = 0, 0
    with get_client(sync_client=True) as client:
        for deployment in client.read_deployments():
            for schedule in client.read_deployment_schedules(deployment.id):
                if schedule.active:
                    client.update_deployment_schedule(deployment.id, schedule.id, active=False)
            client.set_deployment_paused_state(deployment.id, True)
            paused += 1
        while runs := client.read_flow_runs(limit=200):
            for run in runs:
                client.delete_flow_run(run.id)
                deleted += 1
    return [
        f"Prefect ({PREFECT_API_URL.value()}) : {paused} déploiement(s) en pause, planifications désactivées",
        f"Prefect : {deleted} exécution(s) de flow supprimée(s) (les runs planifiés à venir aussi)",
    ]


def _empty(folder: Path) -> bool:
    """Remove ``folder`` and what it holds; True if there was something."""
    if not folder.exists():
        return False
    shutil.rmtree(folder)
    return True


def reset_caches() -> list[str]:
    """Prefect's persisted results (the task cache), the monthly feed, Dagster's stored assets."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH

    done = []
    storage = Path(PREFECT_LOCAL_STORAGE_PATH.value()).expanduser()
    done.append(f"cache Prefect ({storage}) : " + ("vidé" if _empty(storage) else "déjà vide"))
    feed = workshop.customer_feed()
    done.append(f"flux mensuel ({feed.folder}) : {feed.clear()} mois supprimé(s)")
    dagster = Path(os.environ.get("DAGSTER_HOME", workshop.ROOT / ".dagster_home")) / "storage"
    done.append(f"stockage Dagster ({dagster}) : " + ("vidé" if _empty(dagster) else "déjà vide"))
    return done


def reset_mlflow() -> list[str]:
    """Delete registered models, logged models and runs of every experiment."""
    import mlflow
    from mlflow import MlflowClient

    uri = workshop.tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    models = [model.name for model in client.search_registered_models()]
    for name in models:
        client.delete_registered_model(name)
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    runs = 0
    for run in mlflow.search_runs(experiments, output_format="list"):
        client.delete_run(run.info.run_id)
        runs += 1
    logged = client.search_logged_models(experiments) if experiments else []
    for logged_model in logged:
        client.delete_logged_model(logged_model.model_id)
    return [
        f"MLflow ({uri}) : {len(models)} modèle(s) enregistré(s) supprimé(s)"
        + (f" ({', '.join(models)})" if models else ""),
        f"MLflow : {runs} run(s) et {len(logged)} modèle(s) logué(s) supprimés ; les expériences restent, vides",
    ]


def reset() -> list[str]:
    """Everything, Prefect first (so that no scheduled run writes into MLflow while it is emptied)."""
    return [*reset_prefect(), *reset_caches(), *reset_mlflow()]
