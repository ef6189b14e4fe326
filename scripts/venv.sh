#!/usr/bin/env bash
# Make .venv ready: a link to a virtualenv cached by the content hash of what defines it
# (pyproject.toml, this script, the Python version, the extras), so a fresh clone reuses it.
# Usage: scripts/venv.sh [EXTRAS [LINK]]   (default: dev .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
link="${2:-.venv}"
py="${PYTHON:-python3}"
quiet() { grep -v "is ignored: it is neither a file nor a directory" || true; }

if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "mlprep needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
# Only what defines the environment counts: dependencies, Python version, this script, the extras.
# Other extras do not count, so adding one does not rebuild every environment.
deps=$("$py" -c 'import json, sys, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = {name: p.get("optional-dependencies", {}).get(name) for name in sys.argv[1].split(",")}
print(json.dumps([p.get("dependencies"), extras, p.get("requires-python")], sort_keys=True))' "$extras")
key=$( { echo "$deps"; cat scripts/venv.sh; "$py" -V; echo "$extras"; } | sha256sum | cut -c1-16)
cache="${MLPREP_CACHE:-$HOME/.cache/mlprep}/venvs/$key"
if [ ! -f "$cache/.complete" ]; then
  echo "mlprep: creating the virtualenv $cache (extras: $extras)" >&2
  rm -rf "$cache"
  "$py" -m venv "$cache"
  "$cache/bin/python" -m pip install -q --upgrade pip 2>&1 | quiet
  "$cache/bin/python" -m pip install -q ".[${extras}]" 2>&1 | quiet
  "$cache/bin/python" -c "import mlprep" # fail here, not later, if the install did not work
  touch "$cache/.complete"
fi
if [ -e "$link" ] && [ ! -L "$link" ]; then
  echo "mlprep: $link is a folder of your own; using the cached virtualenv through a link needs it gone" >&2
  exit 1
fi
ln -sfn "$cache" "$link"
here=$(realpath src/mlprep/__init__.py)
installed=$("$link/bin/python" -c 'import mlprep, os; print(os.path.realpath(mlprep.__file__))' 2>/dev/null || true)
if [ "$installed" != "$here" ]; then
  "$link/bin/python" -m pip install -q --no-deps -e . 2>&1 | quiet
fi
