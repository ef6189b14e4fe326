"""Atelier Dagster — la référence : le pipeline churn en assets.

    python pipelines/workshop/03_dagster/Dagster_Workshop.py full      # matérialiser tous les assets
    python pipelines/workshop/03_dagster/Dagster_Workshop.py partial   # ré-entraîner seulement (modèle et aval)
    dagster dev -f pipelines/workshop/03_dagster/Dagster_Workshop.py   # l'UI sur http://localhost:3000

Le changement de paradigme : on ne décrit plus des tâches à exécuter mais les données qui doivent
exister. Une dépendance se déclare par le NOM d'un paramètre : ``customer_split(raw_customer_data)``
dépend de l'asset ``raw_customer_data``. Dagster en déduit le graphe, et peut matérialiser une partie
seulement du graphe en relisant le reste depuis son stockage.
"""

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetSelection,
    Config,
    ConfigurableResource,
    DagsterInstance,
    Definitions,
    MaterializeResult,
    MetadataValue,
    Output,
    ScheduleDefinition,
    asset,
    define_asset_job,
    materialize,
)

from churn import data, features, model, pipeline, tracking, workshop

GROUP = "churn"
MODEL_NAME = "churn-dagster"


class MLflowResource(ConfigurableResource):
    """Où vont les runs : une ressource, donc configurable sans toucher aux assets (et remplaçable en test)."""

    experiment: str = "churn-dagster"

    def start(self) -> str:
        return workshop.configure_mlflow(self.experiment)


class TrainingConfig(Config):
    """Les hyperparamètres, modifiables dans le Launchpad de l'UI."""

    model_type: str = "logistic_regression"
    C: float = 1.0
    n_estimators: int = 100
    max_depth: int | None = None
    test_size_ratio: float = 0.2
    threshold: float = 0.75


@asset(group_name=GROUP)
def raw_customer_data(context: AssetExecutionContext) -> pd.DataFrame:
    """La table clients brute."""
    frame = pd.read_csv(workshop.data_path())
    context.add_output_metadata(
        {
            "rows": len(frame),
            "churn_rate": round(float(frame[data.TARGET].mean()), 4),
            "preview": MetadataValue.md(f"```\n{frame.head(5).to_string(index=False)}\n```"),
        }
    )
    return frame


@asset(group_name=GROUP)
def customer_split(context: AssetExecutionContext, raw_customer_data: pd.DataFrame) -> data.Split:
    """Train / test stratifié (dépend de raw_customer_data : le nom du paramètre suffit)."""
    split = data.split(raw_customer_data)
    context.add_output_metadata({"train_rows": len(split.x_train), "test_rows": len(split.x_test)})
    return split


@asset(group_name=GROUP)
def customer_features(context: AssetExecutionContext, customer_split: data.Split) -> dict[str, pd.DataFrame]:
    """Les features du modèle, celles que le runner servira (churn/features.py)."""
    started = time.perf_counter()
    frames = {
        "train": features.transform_frame(customer_split.x_train),
        "test": features.transform_frame(customer_split.x_test),
    }
    context.add_output_metadata(
        {"features": len(features.FEATURES), "seconds": round(time.perf_counter() - started, 3)}
    )
    return frames


@asset(group_name=GROUP)
def trained_model(
    context: AssetExecutionContext,
    config: TrainingConfig,
    customer_features: dict[str, pd.DataFrame],
    customer_split: data.Split,
) -> Any:
    """Le modèle entraîné (un run de ce seul asset ré-entraîne sans recalculer les features)."""
    estimator = model.train(
        customer_features["train"],
        customer_split.y_train,
        config.model_type,
        config.C,
        config.n_estimators,
        config.max_depth,  # type: ignore[arg-type]
    )
    context.add_output_metadata({"model_type": config.model_type, "train_rows": len(customer_split.y_train)})
    return estimator


@asset(group_name=GROUP)
def model_evaluation(
    trained_model: Any, customer_features: dict[str, pd.DataFrame], customer_split: data.Split
) -> Output[dict[str, float]]:
    """Les métriques sur le jeu de test, visibles (et tracées dans le temps) dans l'UI.

    Autre façon d'attacher des métadonnées : renvoyer un ``Output`` (valeur + métadonnées).
    """
    metrics = model.evaluate(trained_model, customer_features["test"], customer_split.y_test)
    return Output(metrics, metadata={name: round(value, 4) for name, value in metrics.items()})


@asset(group_name=GROUP)
def registered_model(
    config: TrainingConfig,
    mlflow: MLflowResource,
    trained_model: Any,
    model_evaluation: dict[str, float],
    customer_features: dict[str, pd.DataFrame],
    customer_split: data.Split,
) -> MaterializeResult:
    """Le run MLflow (paramètres, métriques, modèle), la version au registre et sa promotion."""
    uri = mlflow.start()
    rows = len(customer_split.y_train) + len(customer_split.y_test)
    params = pipeline.training_params(
        config.model_type, config.C, config.n_estimators, config.max_depth, config.test_size_ratio, rows
    )
    run = tracking.log_training_run(
        trained_model, customer_features["train"], model_evaluation, params, mlflow.experiment, MODEL_NAME
    )
    version = tracking.register(run, MODEL_NAME)
    promotion = tracking.promote(MODEL_NAME, version, threshold=config.threshold)
    link = f"{uri}/#/models/{MODEL_NAME}/versions/{version}" if uri.startswith("http") else uri
    return MaterializeResult(
        metadata={
            "mlflow_run_id": run.run_id,
            "model_version": int(version),
            "champion": promotion.approved,
            "promotion": promotion.reason,
            "roc_auc": round(model_evaluation["roc_auc"], 4),
            "mlflow": MetadataValue.url(link) if uri.startswith("http") else MetadataValue.text(link),
        }
    )


ASSETS = [raw_customer_data, customer_split, customer_features, trained_model, model_evaluation, registered_model]
churn_training_job = define_asset_job("churn_training_job", selection=AssetSelection.groups(GROUP))
# Toutes les 2 minutes, pour voir le daemon travailler pendant l'atelier (en production : "0 6 * * *").
churn_training_schedule = ScheduleDefinition(
    name="churn_training_schedule", job=churn_training_job, cron_schedule="*/2 * * * *"
)
defs = Definitions(
    assets=ASSETS,
    jobs=[churn_training_job],
    schedules=[churn_training_schedule],
    resources={"mlflow": MLflowResource()},
)

# Ré-entraîner : le modèle et ce qui en dépend, données et features relues depuis le stockage.
RETRAIN = ["trained_model", "model_evaluation", "registered_model"]


def instance() -> DagsterInstance:
    """L'instance persistante (DAGSTER_HOME, ``.dagster_home`` du dépôt par défaut) : la matérialisation
    partielle relit les assets amont qu'une exécution précédente y a stockés."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(workshop.ROOT / ".dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    if not settings.exists():
        settings.write_text("telemetry:\n  enabled: false\n")
    return DagsterInstance.get()


def run(selection: list[str] | None = None, **config: Any) -> dict[str, Any]:
    """Matérialiser tout (``selection=None``) ou un sous-ensemble ; renvoie ce qui a été matérialisé."""
    result = materialize(
        ASSETS,
        selection=selection,
        instance=instance(),
        resources={"mlflow": MLflowResource()},
        run_config={"ops": {name: {"config": config} for name in ("trained_model", "registered_model")}}
        if config
        else None,
    )
    done = [event.asset_key.to_user_string() for event in result.get_asset_materialization_events()]
    registered = result.asset_materializations_for_node("registered_model")
    metadata = {key: value.value for key, value in registered[0].metadata.items()} if registered else {}
    return {"success": result.success, "materialized": done, "registered_model": metadata}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("full", "partial"))
    parser.add_argument("--model-type", choices=("logistic_regression", "random_forest"))
    args = parser.parse_args(argv)
    config = {"model_type": args.model_type} if args.model_type else {}
    outcome = run(None if args.command == "full" else RETRAIN, **config)
    print(f"matérialisés : {', '.join(outcome['materialized'])}")
    print(f"registered_model : {outcome['registered_model']}")
    return 0 if outcome["success"] else 1


if __name__ == "__main__":
    sys.exit(main())
