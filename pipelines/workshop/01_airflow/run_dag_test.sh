#!/usr/bin/env bash
# Run Airflow_Pipeline.py with dag.test() in Airflow's own environment (Airflow 3 cannot share
# Prefect's: fastapi versions conflict). Creates the cached venv .venv-airflow, an AIRFLOW_HOME
# (.airflow_home by default) with its sqlite metadata database, then runs the DAG once, in process.
#   MLFLOW_TRACKING_URI=http://localhost:5000 bash pipelines/workshop/01_airflow/run_dag_test.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../../.." && pwd)"
bash "$root/scripts/venv.sh" airflow "$root/.venv-airflow" >&2
export AIRFLOW_HOME="${AIRFLOW_HOME:-$root/.airflow_home}"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
mkdir -p "$AIRFLOW_HOME"
if [ ! -f "$AIRFLOW_HOME/.migrated" ]; then
  "$root/.venv-airflow/bin/airflow" db migrate >"$AIRFLOW_HOME/db-migrate.log" 2>&1 \
    || { tail -20 "$AIRFLOW_HOME/db-migrate.log" >&2; exit 1; }
  touch "$AIRFLOW_HOME/.migrated"
fi
exec "$root/.venv-airflow/bin/python" "$root/pipelines/workshop/01_airflow/Airflow_Pipeline.py"
