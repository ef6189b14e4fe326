#!/bin/sh
# Chooses the mode of a preprocessing container:
#   MODE=batch|api|kafka             forces a mode
#   docker run -i IMAGE CMD ARGS...  runs CMD when it is a command (python, sh, mlprep...)
#   docker run -i IMAGE FILE...      batch mode on those files (options such as --on-error pass through)
#   echo '{}' | docker run -i IMAGE  batch mode on stdin (stdin is a pipe or a file)
#   docker run -d IMAGE              REST API on API_PORT (stdin is not a pipe)
#   KAFKA_ENABLED=true + INPUT_TOPIC the Kafka stream processor with the REST API
set -e

batch() { exec mlprep run "$@"; }
api() { exec mlprep serve; }
kafka() { exec mlprep kafka; }

case "${MODE:-auto}" in
  batch) batch "$@" ;;
  api) api ;;
  kafka) kafka ;;
  auto) ;;
  *) echo "entrypoint: MODE must be batch, api or kafka, not '${MODE}'" >&2; exit 2 ;;
esac

if [ "$#" -gt 0 ]; then
  case "$1" in
    -*) batch "$@" ;;
  esac
  if [ ! -e "$1" ] && command -v "$1" >/dev/null 2>&1; then
    exec "$@"
  fi
  batch "$@"
fi

if [ "${KAFKA_ENABLED:-false}" = "true" ] && [ -n "${INPUT_TOPIC:-}" ]; then
  kafka
fi
if [ -p /dev/stdin ] || [ -f /dev/stdin ]; then
  batch
fi
api
