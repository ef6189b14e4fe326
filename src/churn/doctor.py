"""``python -m churn doctor``: what on this laptop would stop the workshop, and how to fix each thing.

Run before the course. Output is in French (the students' language); the exit status is 1 when
anything needs fixing, each problem named with its fix (bash and PowerShell where they differ).
"""

from __future__ import annotations

import errno
import json
import platform
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass

from churn import workshop

MIN_PYTHON = (3, 10)
# MLflow, the Prefect server and its worker, Dagster: what docker stats shows during the course, plus margin.
MIN_DOCKER_BYTES = 4 * 1024**3
# macOS (12 and later) answers on 5000 with its AirPlay receiver, the default MLflow port.
AIRPLAY_PORT = 5000
HEALTH = {"MLflow": "/health", "Prefect": "/api/health", "Dagster": "/server_info"}


@dataclass
class Finding:
    """One check: its verdict, what was seen and, when it failed, what to do."""

    ok: bool
    title: str
    detail: str
    fix: str = ""


def check_python(version: tuple[int, int] = sys.version_info[:2]) -> Finding:
    shown = ".".join(map(str, version))
    if version >= MIN_PYTHON:
        note = "" if version >= (3, 11) else " (le runner mlprep veut 3.11, l'atelier non : voir README_DOCKER.md)"
        return Finding(True, "Python", f"{shown}{note}")
    return Finding(
        False,
        "Python",
        f"{shown} est trop ancien : l'atelier demande Python ≥ 3.10",
        "installez Python 3.11 (python.org, ou `uv python install 3.11`), ou travaillez dans les conteneurs "
        "de la stack (docker compose up -d) sans venv local",
    )


def _bound(port: int) -> bool:
    """Is ``port`` taken on this machine (as Docker would need it, on every interface)?"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("0.0.0.0", port))  # noqa: S104 (a probe: bound then closed, never listening)
        except OSError as error:
            return error.errno in (errno.EADDRINUSE, errno.EACCES)
    return False


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (http://localhost only)
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _env_fix(variable: str, value: int) -> str:
    return (
        f"choisissez un autre port dans .env : {variable}={value} "
        f"(créez-le d'abord : cp .env.example .env ; PowerShell : Copy-Item .env.example .env), "
        "puis docker compose up -d"
    )


def check_port(service: str, variable: str, port: int, system: str = platform.system()) -> Finding:
    """Free, or already the stack's own service: fine. Taken by something else: named, with the fix."""
    title = f"port {port} ({service}, {variable})"
    if not _bound(port):
        return Finding(True, title, "libre")
    if _answers(f"http://localhost:{port}{HEALTH[service]}"):
        return Finding(True, title, f"déjà utilisé par le {service} de la stack")
    culprit = ""
    if port == AIRPLAY_PORT and system == "Darwin":
        culprit = (
            " : sur macOS, c'est le récepteur AirPlay (Réglages Système > Général > AirDrop et Handoff > "
            "Récepteur AirPlay : désactivez-le, ou changez de port)"
        )
    return Finding(
        False,
        title,
        f"déjà pris par un autre programme{culprit}",
        _env_fix(variable, port + 1),
    )


def check_docker(minimum: int = MIN_DOCKER_BYTES) -> Finding:
    """The daemon answers, with enough memory for the stack."""
    if shutil.which("docker") is None:
        return Finding(
            False, "Docker", "la commande docker est introuvable", "installez Docker Desktop (ou Docker Engine)"
        )
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{json .MemTotal}}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except subprocess.TimeoutExpired:
        result = subprocess.CompletedProcess([], 1, "", "docker info ne répond pas en 20 s")
    if result.returncode != 0:
        return Finding(
            False,
            "Docker",
            f"le démon ne répond pas ({result.stderr.strip()[:160]})",
            "démarrez Docker Desktop (ou : sudo systemctl start docker), puis relancez ce diagnostic",
        )
    memory = int(json.loads(result.stdout.strip() or "0"))
    shown = f"{memory / 1024**3:.1f} Go"
    if memory < minimum:
        return Finding(
            False,
            "Docker",
            f"{shown} de mémoire pour les conteneurs, il en faut {minimum / 1024**3:.0f}",
            "Docker Desktop > Settings > Resources > Memory : montez à 4 Go ou plus (Windows/WSL2 : "
            "memory=4GB dans %UserProfile%\\.wslconfig, puis wsl --shutdown)",
        )
    return Finding(True, "Docker", f"{shown} de mémoire disponibles")


def check_mlflow() -> Finding:
    """The store scripts and notebooks will both use, and whether it answers."""
    config = workshop.settings()
    if config.mlflow_tracking_uri:
        uri, origin = config.mlflow_tracking_uri, "MLFLOW_TRACKING_URI"
    else:
        uri, origin = workshop.STACK_MLFLOW.format(port=config.mlflow_port), f"MLFLOW_PORT={config.mlflow_port}"
    if not uri.startswith("http"):
        return Finding(True, "MLflow", f"scripts et notebooks écrivent dans {uri} ({origin})")
    if _answers(f"{uri.rstrip('/')}/health"):
        return Finding(True, "MLflow", f"scripts et notebooks écrivent dans {uri} ({origin}), qui répond")
    return Finding(
        False,
        "MLflow",
        f"{uri} ({origin}) ne répond pas : scripts et notebooks écriraient dans {workshop.LOCAL_STORE}, "
        "que l'UI de la stack ne montre pas",
        "démarrez la stack : docker compose up -d (puis attendez « healthy » dans docker compose ps) ; "
        "si MLflow tourne sur un autre port, mettez-le dans .env (MLFLOW_PORT=...)",
    )


def run_checks() -> list[Finding]:
    config = workshop.settings()
    return [
        check_python(),
        check_docker(),
        *(
            check_port(service, variable, port)
            for service, variable, port in (
                ("MLflow", "MLFLOW_PORT", config.mlflow_port),
                ("Prefect", "PREFECT_PORT", config.prefect_port),
                ("Dagster", "DAGSTER_PORT", config.dagster_port),
            )
        ),
        check_mlflow(),
    ]


def main() -> int:
    """Print every finding; 1 if any needs fixing."""
    findings = run_checks()
    source = workshop.ENV_FILE if workshop.ENV_FILE.is_file() else "aucun .env : valeurs par défaut de .env.example"
    print(f"Diagnostic de l'atelier (réglages : {source})\n")
    for finding in findings:
        print(f"{'✅' if finding.ok else '❌'} {finding.title} : {finding.detail}")
        if finding.fix:
            print(f"   -> {finding.fix}")
    problems = sum(not finding.ok for finding in findings)
    print("\nTout est prêt." if not problems else f"\n{problems} problème(s) à corriger avant l'atelier.")
    return 1 if problems else 0
