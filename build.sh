#!/usr/bin/env bash
# ./build.sh RUN_ID [options]: build the preprocessing image of an MLflow run, named automatically
# {type}-{model_name}-{version} from the run's tags. Options: see `mlprep build --help`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ "$#" -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  echo "usage: ./build.sh RUN_ID [--tag TAG] [--preprocessing-path PATH] [--python-version V] [--base-image IMAGE]" >&2
  [ "$#" -ge 1 ] && exit 0 || exit 2
fi
python="${PYTHON:-python3}"
[ -x "$here/.venv/bin/python" ] && python="$here/.venv/bin/python"
run_id="$1"
shift
exec "$python" "$here/build_scripts/build_image.py" "$run_id" auto "$@"
