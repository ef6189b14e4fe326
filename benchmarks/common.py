"""Helpers for the benchmarks: timing whole commands (best of N) and printing comparable figures."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = sys.executable
WORK = Path(os.environ.get("MLPREP_BENCH_DIR", tempfile.gettempdir())) / "mlprep-bench"
WORK.mkdir(parents=True, exist_ok=True)
IDENTITY = WORK / "identity.py"
IDENTITY.write_text("def pre_processing(data):\n    return data\n")


def best_time(command: list[str], stdin: Path | None = None, repeat: int = 3) -> float:
    """Best wall time of ``command`` over ``repeat`` runs, output to /dev/null; fails loudly."""
    best = float("inf")
    for _ in range(repeat):
        with open(os.devnull, "wb") as sink, open(stdin, "rb") if stdin else open(os.devnull, "rb") as source:
            begin = time.perf_counter()
            result = subprocess.run(command, stdin=source, stdout=sink, stderr=subprocess.PIPE, check=False)
            elapsed = time.perf_counter() - begin
        if result.returncode != 0:
            raise SystemExit(f"benchmark command failed: {command}\n{result.stderr.decode()}")
        best = min(best, elapsed)
    return best


def python_snippet(code: str) -> list[str]:
    return [PYTHON, "-c", code]


def mlprep(*args: str) -> list[str]:
    return [PYTHON, "-m", "mlprep", *args]


def report(title: str, rows: list[tuple[str, float]], unit: str, baseline: str, targets: dict[str, float]) -> bool:
    """Print rates and ratios to ``baseline``; True when every target ratio is met."""
    print(f"\n### {title}")
    rates = dict(rows)
    ok = True
    for name, rate in rows:
        ratio = rate / rates[baseline]
        line = f"  {name:<42} {rate:>14,.0f} {unit}   {ratio:5.2f}x {baseline}"
        if name in targets:
            met = ratio >= targets[name]
            ok &= met
            line += f"   target >= {targets[name]}x: {'met' if met else 'MISSED'}"
        print(line)
    return ok
