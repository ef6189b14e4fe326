"""``python -m churn doctor`` names what would stop the workshop on a laptop, with the fix."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from churn import doctor
from mlprep.services import free_port


def _doctor(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "churn", "doctor"],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
        check=False,
    )


def test_a_busy_port_is_named_with_its_fix_and_fails_the_diagnosis(mlflow_stack):
    env = {
        "MLFLOW_TRACKING_URI": mlflow_stack.url,
        "PREFECT_PORT": str(free_port()),
        "DAGSTER_PORT": str(free_port()),
    }
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _doctor({**env, "MLFLOW_PORT": str(port)})
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"❌ port {port} (MLflow, MLFLOW_PORT) : déjà pris par un autre programme" in result.stdout
    assert f"MLFLOW_PORT={port + 1}" in result.stdout and "Copy-Item .env.example .env" in result.stdout
    # The store scripts and notebooks share is shown, and it answers.
    assert f"✅ MLflow : scripts et notebooks écrivent dans {mlflow_stack.url}" in result.stdout
    released = _doctor({**env, "MLFLOW_PORT": str(port)})
    assert f"✅ port {port} (MLflow, MLFLOW_PORT) : libre" in released.stdout


def test_the_stack_own_service_on_its_port_is_not_a_problem(mlflow_stack):
    finding = doctor.check_port("MLflow", "MLFLOW_PORT", mlflow_stack.port)
    assert finding.ok and "stack" in finding.detail


def test_the_airplay_port_on_macos_names_airplay(monkeypatch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        elsewhere = doctor.check_port("MLflow", "MLFLOW_PORT", port, system="Darwin")
        monkeypatch.setattr(doctor, "AIRPLAY_PORT", port)  # stands for 5000, which this machine may hold
        on_linux = doctor.check_port("MLflow", "MLFLOW_PORT", port, system="Linux")
        on_macos = doctor.check_port("MLflow", "MLFLOW_PORT", port, system="Darwin")
    assert not elsewhere.ok and "AirPlay" not in elsewhere.detail
    assert not on_linux.ok and "AirPlay" not in on_linux.detail
    assert not on_macos.ok and "récepteur AirPlay" in on_macos.detail and f"MLFLOW_PORT={port + 1}" in on_macos.fix


def test_python_older_than_3_10_is_refused_and_3_10_accepted():
    assert not doctor.check_python((3, 9)).ok
    assert doctor.check_python((3, 10)).ok
