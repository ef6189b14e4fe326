#!/usr/bin/env bash
# The two test suites at once: the runner's (shared .venv) in the foreground, the workshop's
# (.venv-workshop) beside it with its output kept in .test-logs/workshop.log and printed at the end.
# Much of each suite waits on servers, schedules and image builds, so together they take little more
# than the longer one. The Docker engine and the base image both use are made ready first, once.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
.venv/bin/python -c 'import sys; sys.path.insert(0, "tests"); import infra; infra.ensure_base_image()' || exit 1
mkdir -p .test-logs
.venv-workshop/bin/python -m pytest -q --durations=25 tests/workshop >.test-logs/workshop.log 2>&1 &
workshop=$!
trap 'kill "$workshop" 2>/dev/null' INT TERM
.venv/bin/python -m pytest -q --durations=25 --ignore=tests/workshop
runner=$?
echo "runner suite: exit status $runner; waiting for the workshop suite (.test-logs/workshop.log)"
wait "$workshop"
status=$?
echo "---- workshop suite (tests/workshop) ----"
cat .test-logs/workshop.log
echo "runner suite: exit status $runner; workshop suite: exit status $status"
[ "$runner" -eq 0 ] && [ "$status" -eq 0 ]
