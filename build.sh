#!/usr/bin/env bash
# ./build.sh RUN_ID [options]: build the preprocessing image of an MLflow run, named automatically
# {type}-{model_name}-{version} from the run's tags (with --with-model MODEL_URI, the model too, in an
# image named {type}-{model_name}-{version}-model-{model version}). Options: see `mlprep build --help`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ "$#" -lt 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  echo "usage: ./build.sh RUN_ID [--tag TAG] [--preprocessing-path PATH] [--python-version V] [--base-image IMAGE] [--with-model MODEL_URI]" >&2
  [ "$#" -ge 1 ] && exit 0 || exit 2
fi
python="${PYTHON:-python3}"
[ -x "$here/.venv/bin/python" ] && python="$here/.venv/bin/python"
run_id="$1"
shift
exec "$python" "$here/build_scripts/build_image.py" "$run_id" auto "$@"
