#!/usr/bin/env bash
# Run every benchmark; each prints its figures and ratios against a baseline run in the same session.
# `scripts/bench.sh peers` runs the REST comparison with other servers instead (benchmarks/peers/).
set -euo pipefail
cd "$(dirname "$0")/.."
need() {  # need COMMAND DEBIAN-PACKAGE
  command -v "$1" >/dev/null && return
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
  else
    echo "bench: $1 is missing; install it with: sudo apt-get install $2" >&2
    exit 1
  fi
}
need wrk wrk
bash scripts/venv.sh bench .venv-bench  # the dev extra and the bench one (locks/bench.txt)
bash scripts/venv.sh quix .venv-quix    # Quix Streams, a peer of the stream processor (locks/quix.txt)
export PATH="$PWD/.venv-bench/bin:$PATH"
if [ "${1:-}" = peers ]; then
  exec python benchmarks/peers/run.py  # each peer in its own virtualenv (benchmarks/peers/venv.sh)
fi
need java openjdk-17-jre-headless  # benchmarks/bench_spark.py runs Spark in local mode
status=0
for bench in benchmarks/bench_*.py; do
  python "$bench" || status=1
done
exit $status
