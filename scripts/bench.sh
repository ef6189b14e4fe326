#!/usr/bin/env bash
# Run every benchmark; each prints its figures and ratios against a baseline run in the same session.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
  else
    echo "bench: wrk is missing; install it with: sudo apt-get install wrk" >&2
    exit 1
  fi
fi
if ! command -v java >/dev/null; then  # benchmarks/bench_spark.py runs Spark in local mode
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null
  else
    echo "bench: java is missing; install it with: sudo apt-get install openjdk-17-jre-headless" >&2
    exit 1
  fi
fi
bash scripts/venv.sh bench .venv-bench  # the dev extra and the bench one (locks/bench.txt)
bash scripts/venv.sh quix .venv-quix    # Quix Streams, a peer of the stream processor (locks/quix.txt)
export PATH="$PWD/.venv-bench/bin:$PATH"
status=0
for bench in benchmarks/bench_*.py; do
  python "$bench" || status=1
done
exit $status
