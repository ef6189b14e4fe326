"""Churn prediction: plain, typed steps that every orchestrator (Prefect, Dagster, KFP, Airflow) calls.

No orchestrator code lives here. MLFLOW_TRACKING_URI decides where runs and models go (MLflow's
local sqlite store when unset).
"""
