#!/usr/bin/env bash
# ./check_kafka_topic.sh TOPIC [--keys]: print the messages of a topic, oldest first, then exit.
# The broker is KAFKA_BOOTSTRAP_SERVERS (default localhost:29092).
set -euo pipefail
if [ "$#" -lt 1 ]; then
  echo "usage: $0 TOPIC [--keys]" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-python3}"
[ -x "$here/.venv/bin/python" ] && python="$here/.venv/bin/python"
exec "$python" -m mlprep topic-dump "$@"
