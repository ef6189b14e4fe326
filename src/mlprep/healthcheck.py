"""Docker HEALTHCHECK: a serving container is healthy when /health answers; a batch one always is."""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

# The serving commands, and the variable naming the port of their /health (with its default).
SERVING = {b"serve": ("API_PORT", "8000"), b"kafka": ("API_PORT", "8000"), b"bridge": ("BRIDGE_PORT", "8081")}


def main() -> int:
    try:
        command = Path("/proc/1/cmdline").read_bytes().split(b"\0")
    except OSError:
        command = []
    serving = [SERVING[word] for word in command if word in SERVING]
    if not serving:
        return 0
    port = os.environ.get(*serving[0])
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=4) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
