#!/usr/bin/env bash
# Print the path of the virtualenv of one peer server, creating it when missing. Each peer has its own,
# cached by the content hash of its lock (benchmarks/peers/requirements/PEER.txt), this script and the
# Python version, beside the project's own (scripts/venv.sh): nothing of it is a dependency of mlprep.
# Usage: benchmarks/peers/venv.sh PEER   (exits 1 and says why when the peer cannot be installed)
set -euo pipefail
cd "$(dirname "$0")"
peer="$1"
py="${PYTHON:-python3}"
lock="requirements/${peer}.txt"
[ -f "$lock" ] || { echo "no lock $lock for the peer '$peer'" >&2; exit 1; }
key=$( { cat "$lock"; cat venv.sh; "$py" -V; } | sha256sum | cut -c1-16)
cache="${MLPREP_CACHE:-$HOME/.cache/mlprep}/venvs/peer-$peer-$key"
if [ ! -f "$cache/.complete" ]; then
  echo "peers: creating the virtualenv of $peer in $cache ($lock)" >&2
  rm -rf "$cache"
  "$py" -m venv "$cache"
  "$cache/bin/python" -m pip install -q --disable-pip-version-check uv >&2
  "$cache/bin/python" -m uv --native-tls pip install -q --python "$cache/bin/python" -r "$lock" >&2
  touch "$cache/.complete"
fi
echo "$cache"
