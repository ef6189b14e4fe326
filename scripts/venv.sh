#!/usr/bin/env bash
# Make .venv ready: a link to a virtualenv cached by the content hash of what defines it (the lock
# file of the chosen extras, this script, the Python version), so a fresh clone reuses it.
# The versions come from locks/EXTRAS.txt (`make lock` writes them from pyproject.toml); uv installs them.
# Usage: scripts/venv.sh [EXTRAS [LINK]]   (default: dev .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
link="${2:-.venv}"
py="${PYTHON:-python3}"
lock="locks/${extras}.txt"
quiet() { grep -v "is ignored: it is neither a file nor a directory" || true; }

if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "mlprep needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
if [ ! -f "$lock" ]; then
  echo "mlprep: no lock file $lock for the extras '$extras'; write it with: make lock" >&2
  exit 1
fi
key=$( { cat "$lock"; cat scripts/venv.sh; "$py" -V; echo "$extras"; } | sha256sum | cut -c1-16)
cache="${MLPREP_CACHE:-$HOME/.cache/mlprep}/venvs/$key"
uv=("$cache/bin/python" -m uv --native-tls)  # the system CA store: package index proxies may have their own
if [ ! -f "$cache/.complete" ]; then
  echo "mlprep: creating the virtualenv $cache ($lock)" >&2
  rm -rf "$cache"
  "$py" -m venv "$cache"
  "$cache/bin/python" -m pip install -q --disable-pip-version-check uv 2>&1 | quiet
  "${uv[@]}" pip install -q --python "$cache/bin/python" -r "$lock"
  "${uv[@]}" pip install -q --python "$cache/bin/python" --no-deps -e .
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
  "${uv[@]}" pip install -q --python "$link/bin/python" --no-deps -e .
fi
