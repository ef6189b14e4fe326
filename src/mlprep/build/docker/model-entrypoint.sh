#!/bin/sh
# Serves the MLflow model of this image on /invocations, port MODEL_PORT (default 8080).
set -e
exec mlflow models serve -m /opt/ml/model --env-manager local -h "${MODEL_HOST:-0.0.0.0}" -p "${MODEL_PORT:-8080}" "$@"
