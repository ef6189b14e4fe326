#!/usr/bin/env bash
# echo '{"test": "data"}' | ./run_with_kafka.sh IMAGE [ARGS...]
# Batch mode with its output sent to Kafka, topic {model_name}-{version}-{KAFKA_TOPIC_SUFFIX}.
# ENV_FILE (default .env.docker) holds the settings; DOCKER_NETWORK (default bridge) the network;
# KAFKA_BOOTSTRAP_SERVERS, when set, overrides the file's.
set -euo pipefail
if [ "$#" -lt 1 ]; then
  echo "usage: echo '{\"test\": \"data\"}' | $0 IMAGE [ARGS...]" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
image="$1"
shift
args=(run -i --rm --network "${DOCKER_NETWORK:-bridge}" --env-file "${ENV_FILE:-$here/.env.docker}")
if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
  args+=(-e "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS")
fi
exec docker "${args[@]}" "$image" "$@"
