"""Helpers for the benchmarks: timing whole commands (best of N) and printing comparable figures."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PYTHON = sys.executable
WORK = Path(os.environ.get("MLPREP_BENCH_DIR", tempfile.gettempdir())) / "mlprep-bench"
WORK.mkdir(parents=True, exist_ok=True)
IDENTITY = WORK / "identity.py"
IDENTITY.write_text("def pre_processing(data):\n    return data\n")
# Commands run as installed code runs: with the bytecode cache (a development shell may turn it off).
ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def wrk(url: str, body: dict, connections: str = "16", duration: str | None = None) -> tuple[float, float]:
    """Requests per second and median latency (ms) of POST ``body`` to ``url`` under wrk (one thread);
    fails on any non-2xx answer."""
    import httpx

    script = WORK / "post.lua"
    payload = json.dumps(body)
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = {json.dumps(payload)}\n'
    )
    check = httpx.post(url, content=payload, headers={"Content-Type": "application/json"}, timeout=30)
    if check.status_code != 200:
        raise SystemExit(f"{url} answered {check.status_code}: {check.text[:300]}")
    duration = duration or os.environ.get("MLPREP_BENCH_DURATION", "8s")
    result = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    )
    if "Non-2xx" in result.stdout:
        raise SystemExit(f"errors under load on {url}:\n{result.stdout}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", result.stdout).group(1))
    value, unit = re.search(r"50%\s+([\d.]+)(us|ms|s)\b", result.stdout).groups()
    return rate, float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


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


@dataclass
class Run:
    seconds: float
    cpu_seconds: float  # user + system, of the process and the workers it waited for
    peak_rss: int  # bytes: the largest resident set of the process


def run_once(command: list[str], stdin: Path | None = None, stdout: Path | None = None) -> Run:
    """One run of ``command`` (output to ``stdout`` or /dev/null): wall time and peak RSS (``wait4``); fails loudly."""
    with open(stdout or os.devnull, "wb") as sink, open(stdin or os.devnull, "rb") as source:
        begin = time.perf_counter()
        process = subprocess.Popen(command, stdin=source, stdout=sink, stderr=subprocess.PIPE, env=ENV)
        assert process.stderr is not None
        errors = process.stderr.read()  # a few lines at most
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - begin
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"benchmark command failed: {command}\n{errors.decode()}")
    return Run(elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024)


Command = tuple[list[str], Path | None, Path | None]  # argv, stdin, stdout (None: /dev/null)


def alternate(commands: dict[str, Command], rounds: int) -> dict[str, list[Run]]:
    """Each command once per round, in turn, after one round not counted (caches): a change of load on
    a shared machine touches every command alike, and each round gives one ratio per command."""
    runs: dict[str, list[Run]] = {name: [] for name in commands}
    for round_ in range(rounds + 1):
        for name, (command, stdin, stdout) in commands.items():
            run = run_once(command, stdin, stdout)
            if round_:
                runs[name].append(run)
    return runs


def report_rounds(
    title: str, runs: dict[str, list[Run]], items: int, baseline: str, targets: dict[str, float]
) -> dict[str, float]:
    """Print each command's median rate, its ratio to ``baseline`` (the median of the per-round ratios of
    wall times; of CPU times too, which other processes on a busy machine disturb less) and its peak
    RSS; return the wall-time ratios."""
    print(f"\n### {title} ({len(runs[baseline])} alternating rounds; ratios to {baseline})")
    ratios: dict[str, float] = {}
    for name, mine in runs.items():
        rate = items / statistics.median(run.seconds for run in mine)
        ratio = statistics.median(base.seconds / run.seconds for base, run in zip(runs[baseline], mine, strict=True))
        ratios[name] = ratio
        cpu = statistics.median(
            base.cpu_seconds / run.cpu_seconds for base, run in zip(runs[baseline], mine, strict=True)
        )
        rss = max(run.peak_rss for run in mine) / 2**20
        line = f"  {name:<32} {rate:>10,.0f} records/s  {ratio:5.2f}x (CPU time {cpu:4.2f}x)  peak RSS {rss:5.1f} MB"
        if name in targets:
            line += f"   target >= {targets[name]}x: {'met' if ratio >= targets[name] else 'MISSED'}"
        print(line)
    return ratios
