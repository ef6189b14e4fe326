"""Atelier Dagster — la référence : le pipeline churn en assets.

    python pipelines/workshop/03_dagster/Dagster_Workshop.py full      # matérialiser tous les assets
    python pipelines/workshop/03_dagster/Dagster_Workshop.py partial   # ré-entraîner seulement (modèle et aval)
    python pipelines/workshop/03_dagster/Dagster_Workshop.py monthly 2025-01 2025-02 2025-03   # mois par mois
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
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetSelection,
    Config,
    ConfigurableResource,
    DagsterInstance,
    Definitions,
    MaterializeResult,
    MetadataValue,
    MonthlyPartitionsDefinition,
    Output,
    ScheduleDefinition,
    asset,
    build_schedule_from_partitioned_job,
    define_asset_job,
    materialize,
)

from churn import data, features, model, pipeline, tracking, workshop

GROUP = "churn"
MODEL_NAME = "churn-dagster"
MONTHLY_GROUP = "churn_monthly"
MONTHLY_MODEL_NAME = "churn-dagster-monthly"
# Une partition par mois de clients : janvier à juin 2025 (la hausse des prix arrive en mars).
MONTHS = MonthlyPartitionsDefinition(start_date=f"{data.FIRST_MONTH}-01", end_offset=0, end_date="2025-07-01")


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


# ---------------------------------------------------------------------------------------------------
# Les mêmes données, mois par mois : des partitions mensuelles et une vérification (asset check).
# ---------------------------------------------------------------------------------------------------
def _month(context: AssetExecutionContext) -> int:
    """Le numéro du mois de la partition (1 = 2025-01) ; sans partition (matérialiser tout), le premier."""
    if not context.has_partition_key:
        return 1
    return (pd.Period(context.partition_key[:7], freq="M") - pd.Period(data.FIRST_MONTH, freq="M")).n + 1


@asset(group_name=MONTHLY_GROUP, partitions_def=MONTHS)
def monthly_customers(context: AssetExecutionContext) -> MaterializeResult:
    """Les clients d'un mois : une partition par mois. Comparez les partitions dans l'UI (onglet Partitions,
    graphes des métadonnées) : à partir de mars, les prix montent et le churn avec."""
    frame = data.generate_month(_month(context))
    return MaterializeResult(
        metadata={
            "rows": len(frame),
            "churn_rate": round(float(frame[data.TARGET].mean()), 4),
            "mean_monthly_charges": round(float(frame["monthly_charges"].mean()), 2),
        }
    )


@asset(
    group_name=MONTHLY_GROUP,
    partitions_def=MONTHS,
    check_specs=[AssetCheckSpec("holdout_auc_above_threshold", asset="monthly_model")],
)
def monthly_model(context: AssetExecutionContext, config: TrainingConfig, mlflow: MLflowResource) -> Any:
    """Le modèle du mois M : entraîné sur les mois jusqu'à M (une moitié de M gardée comme holdout),
    noté avec le champion sur ce holdout, promu seulement au-delà du gain minimal (churn.tracking.promote).

    Matérialisez les mois dans l'ordre (janvier, puis février...) : chaque mois défie le champion du
    précédent. Les mois passés sont relus depuis leur source (``data.generate_month``), pas depuis
    ``monthly_customers`` : un asset partitionné peut ainsi être matérialisé aussi sans partition
    (« Materialize all » sur tout le graphe prend alors le premier mois). La vérification
    ``holdout_auc_above_threshold`` échoue si la ROC AUC est sous le seuil.
    """
    month = _month(context)
    months = data.generate_months(month)
    split = data.split_newest_month(months)
    x_train, x_test = features.transform_frame(split.x_train), features.transform_frame(split.x_test)
    hyperparameters = (config.model_type, config.C, config.n_estimators, config.max_depth)
    estimator = model.train(x_train, split.y_train, *hyperparameters)  # type: ignore[arg-type]
    cv = model.cross_validate(x_train, split.y_train, *hyperparameters)  # type: ignore[arg-type]
    metrics = model.evaluate(estimator, x_test, split.y_test)
    mlflow.start()
    label = data.month_label(month)
    params = {
        **pipeline.training_params(
            config.model_type, config.C, config.n_estimators, config.max_depth, 0.5, len(months)
        ),
        "data_month": label,
    }
    training = pd.concat([split.x_train, split.y_train], axis=1)
    run = tracking.log_training_run(
        estimator, x_train, {**metrics, **cv}, params, mlflow.experiment, MONTHLY_MODEL_NAME, training_data=training
    )
    version = tracking.register(run, MONTHLY_MODEL_NAME, tags={"data_month": label})
    promotion = tracking.promote(
        MONTHLY_MODEL_NAME, version, threshold=config.threshold, holdout=(x_test, split.y_test)
    )
    yield Output(
        estimator,
        metadata={
            "month": label,
            "model_version": int(version),
            "champion": promotion.approved,
            "promotion": promotion.reason,
            "cv_roc_auc": round(cv["cv_roc_auc"], 4),
            "holdout_roc_auc": round(metrics["roc_auc"], 4),
            "mlflow_run_id": run.run_id,
        },
    )
    yield AssetCheckResult(
        check_name="holdout_auc_above_threshold",
        passed=metrics["roc_auc"] >= config.threshold,
        severity=AssetCheckSeverity.ERROR,
        metadata={"roc_auc": round(metrics["roc_auc"], 4), "threshold": config.threshold},
    )


MONTHLY_ASSETS = [monthly_customers, monthly_model]
monthly_training_job = define_asset_job(
    "monthly_training_job", selection=AssetSelection.groups(MONTHLY_GROUP), partitions_def=MONTHS
)
# En production : chaque mois, la partition du mois qui vient de se terminer (arrêtée par défaut).
monthly_training_schedule = build_schedule_from_partitioned_job(monthly_training_job)

ASSETS = [raw_customer_data, customer_split, customer_features, trained_model, model_evaluation, registered_model]
churn_training_job = define_asset_job("churn_training_job", selection=AssetSelection.groups(GROUP))
# Toutes les 2 minutes, pour voir le daemon travailler pendant l'atelier (en production : "0 6 * * *").
churn_training_schedule = ScheduleDefinition(
    name="churn_training_schedule", job=churn_training_job, cron_schedule="*/2 * * * *"
)
defs = Definitions(
    assets=[*ASSETS, *MONTHLY_ASSETS],
    jobs=[churn_training_job, monthly_training_job],
    schedules=[churn_training_schedule, monthly_training_schedule],
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


def run_month(month: str, **config: Any) -> dict[str, Any]:
    """Matérialiser la partition ``month`` (``2025-03``) des assets mensuels ; la promotion et la vérification."""
    result = materialize(
        MONTHLY_ASSETS,
        partition_key=f"{month}-01",
        instance=instance(),
        resources={"mlflow": MLflowResource()},
        run_config={"ops": {"monthly_model": {"config": config}}} if config else None,
        raise_on_error=False,
    )
    (materialization,) = result.asset_materializations_for_node("monthly_model")
    checks = {check.check_name: check.passed for check in result.get_asset_check_evaluations()}
    return {
        "success": result.success,
        "monthly_model": {key: value.value for key, value in materialization.metadata.items()},
        "checks": checks,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("full", "partial", "monthly"))
    parser.add_argument("months", nargs="*", help="monthly : les mois à matérialiser, dans l'ordre (2025-01...)")
    parser.add_argument("--model-type", choices=("logistic_regression", "random_forest"))
    args = parser.parse_args(argv)
    if args.command == "monthly":
        outcomes = [run_month(month) for month in args.months or [data.month_label(1)]]
        for month, outcome in zip(args.months or [data.month_label(1)], outcomes, strict=True):
            print(f"{month} : {outcome['monthly_model']['promotion']} ; vérifications : {outcome['checks']}")
        return 0 if all(outcome["success"] for outcome in outcomes) else 1
    config = {"model_type": args.model_type} if args.model_type else {}
    outcome = run(None if args.command == "full" else RETRAIN, **config)
    print(f"matérialisés : {', '.join(outcome['materialized'])}")
    print(f"registered_model : {outcome['registered_model']}")
    return 0 if outcome["success"] else 1


if __name__ == "__main__":
    sys.exit(main())
