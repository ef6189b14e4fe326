"""Exercices Dagster — 80 % dans l'UI, 20 % dans le code.

Ce fichier est chargé par le webserver Dagster (service ``dagster-webserver`` de la stack, ou
``dagster dev -f pipelines/workshop/03_dagster/Dagster_Exercises.py``). Son graphe est CASSÉ exprès :
ouvrez http://localhost:3000, regardez le graphe d'assets, trouvez ce qui cloche, corrigez ici, puis
cliquez sur « Reload definitions ».

    python pipelines/workshop/03_dagster/Dagster_Exercises.py check   # ce qui est fait, ce qui manque

La solution : Dagster_Workshop.py (``python Dagster_Workshop.py full``).
"""

import sys
from typing import Any

import pandas as pd
from dagster import AssetExecutionContext, Definitions, MaterializeResult, asset, define_asset_job

from churn import data, features, model, workshop

MODEL_NAME = "churn-dagster-exercises"


@asset
def raw_customer_data(context: AssetExecutionContext) -> pd.DataFrame:
    """La table clients brute."""
    frame = pd.read_csv(workshop.data_path())
    # TODO 2 (métadonnées) : attachez à la matérialisation le nombre de lignes et le taux de churn :
    #   context.add_output_metadata({"rows": len(frame), "churn_rate": float(frame["Churn"].mean())})
    #   Rematérialisez : les valeurs apparaissent dans l'UI (et leur historique dans « Plots »).
    return frame


@asset
def customer_split(raw_customer_data: pd.DataFrame) -> data.Split:
    """Train / test stratifié."""
    return data.split(raw_customer_data)


# TODO 1 (le graphe cassé) : dans l'UI, customer_split ne sert à personne et customer_features part de
#   la table brute ENTIÈRE : trained_model échoue (2000 lignes de features pour 1600 étiquettes), et le
#   test serait de toute façon contaminé. Dagster câble les dépendances par le NOM des paramètres :
#   faites dépendre customer_features de customer_split (paramètre `customer_split: data.Split`) et
#   calculez les features de customer_split.x_train et customer_split.x_test.
@asset
def customer_features(raw_customer_data: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Les features du modèle, pour l'entraînement et le test."""
    everything = features.transform_frame(raw_customer_data.drop(columns=[data.TARGET]))
    return {"train": everything, "test": everything}


@asset
def trained_model(customer_features: dict[str, pd.DataFrame], customer_split: data.Split) -> Any:
    """Une forêt aléatoire."""
    return model.train(customer_features["train"], customer_split.y_train, "random_forest")


# TODO 3 (MLflow) : loggez le modèle dans MLflow et renvoyez l'identifiant du run en métadonnée :
#   from churn import tracking
#   workshop.configure_mlflow("churn-dagster-exercises")
#   run = tracking.log_training_run(trained_model, customer_features["train"], metrics, {...}, ...)
#   return MaterializeResult(metadata={"mlflow_run_id": run.run_id, **metrics})
@asset
def model_evaluation(
    trained_model: Any, customer_features: dict[str, pd.DataFrame], customer_split: data.Split
) -> MaterializeResult:
    """Les métriques sur le jeu de test."""
    metrics = model.evaluate(trained_model, customer_features["test"], customer_split.y_test)
    return MaterializeResult(metadata={name: round(value, 4) for name, value in metrics.items()})


# TODO 4 (matérialisation partielle, dans l'UI) : une fois le graphe réparé et tout matérialisé,
#   sélectionnez trained_model et model_evaluation, puis « Materialize selected » : les données et
#   les features ne sont PAS recalculées, elles sont relues depuis le stockage.

churn_training_job = define_asset_job("churn_training_job")

# TODO 5 (planification) : créez churn_training_schedule, toutes les 2 minutes, et ajoutez-la aux
#   Definitions :  ScheduleDefinition(name="churn_training_schedule", job=churn_training_job,
#   cron_schedule="*/2 * * * *").  Activez-la dans l'UI (Automation) : le daemon la lance.
defs = Definitions(
    assets=[raw_customer_data, customer_split, customer_features, trained_model, model_evaluation],
    jobs=[churn_training_job],
)


# ---------------------------------------------------------------------------------------------------
# La vérification : ne modifiez pas ce qui suit.
# ---------------------------------------------------------------------------------------------------
def check(definitions: Definitions) -> list[tuple[str, bool, str]]:
    """Each exercise: (title, done, what is still missing). Materialises the graph once it is whole."""
    graph = definitions.resolve_asset_graph()
    parents = {
        key.to_user_string(): {parent.to_user_string() for parent in graph.get(key).parent_keys}
        for key in graph.materializable_asset_keys
    }
    wired = parents.get("customer_features") == {"customer_split"}
    schedules = {schedule.name: schedule for schedule in definitions.schedules or []}
    schedule = schedules.get("churn_training_schedule")
    metadata: dict[str, set[str]] = {}
    if wired:
        from dagster import materialize

        result = materialize(list(definitions.assets or []), resources=definitions.resources)
        for event in result.get_asset_materialization_events():
            metadata[event.asset_key.to_user_string()] = set(event.materialization.metadata)
    return [
        (
            "1. le graphe réparé",
            wired,
            f"customer_features dépend de {', '.join(sorted(parents.get('customer_features', []))) or 'rien'},"
            " et devrait dépendre de customer_split",
        ),
        (
            "2. métadonnées de raw_customer_data",
            "rows" in metadata.get("raw_customer_data", set()),
            "add_output_metadata({'rows': ...}) dans raw_customer_data"
            + (" (réparez d'abord le graphe)" * (not wired)),
        ),
        (
            "3. run MLflow en métadonnée",
            any("mlflow_run_id" in keys for keys in metadata.values()),
            "une matérialisation avec la métadonnée mlflow_run_id",
        ),
        (
            "5. planification toutes les 2 minutes",
            schedule is not None and schedule.cron_schedule == "*/2 * * * *",
            "ScheduleDefinition(name='churn_training_schedule', ..., cron_schedule='*/2 * * * *') dans defs",
        ),
    ]


if __name__ == "__main__":
    if sys.argv[1:] != ["check"]:
        sys.exit(f"usage: python {sys.argv[0]} check   (le reste se passe dans l'UI Dagster)")
    sys.exit(1 if workshop.report(check(defs)) else 0)
