"""churn.workshop: where the workshop finds its data and MLflow, and alerts that never break a run."""

from __future__ import annotations

import pytest

from churn import workshop
from mlprep.services import free_port


def test_an_explicit_data_path_that_does_not_exist_is_named(monkeypatch, tmp_path):
    missing = tmp_path / "nowhere.csv"
    monkeypatch.setenv("CHURN_DATA_PATH", str(missing))
    with pytest.raises(FileNotFoundError, match=f"CHURN_DATA_PATH={missing}: no such file"):
        workshop.data_path()
    assert not missing.exists()  # nothing was written in its place


def test_mlflow_uri_env_then_the_stack_then_one_local_store(monkeypatch, tmp_path, mlflow_stack, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert workshop.tracking_uri() == "http://mlflow.example:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setenv("MLFLOW_PORT", str(mlflow_stack.port))  # the stack's MLflow answers on that port
    assert workshop.tracking_uri() == f"http://localhost:{mlflow_stack.port}"
    monkeypatch.setenv("MLFLOW_PORT", str(free_port()))  # nothing answers: the one local store, said aloud
    assert workshop.tracking_uri() == f"sqlite:///{workshop.ROOT / 'mlflow.db'}"
    assert "python -m churn doctor" in capsys.readouterr().err


def test_the_port_of_the_env_file_is_the_port_scripts_use(monkeypatch, tmp_path, mlflow_stack):
    # docker compose publishes MLflow on MLFLOW_PORT of .env: scripts and notebooks read the same file.
    env_file = tmp_path / ".env"
    env_file.write_text(f"MLFLOW_PORT={mlflow_stack.port}\n")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_PORT", raising=False)
    monkeypatch.setitem(workshop.WorkshopSettings.model_config, "env_file", env_file)
    assert workshop.tracking_uri() == f"http://localhost:{mlflow_stack.port}"


def test_a_notification_that_cannot_be_sent_is_reported_not_raised(monkeypatch, capsys, webhook_receiver):
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", f"http://127.0.0.1:{free_port()}/down")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"{webhook_receiver.url}/slack")
    assert workshop.notify("hello") == ["slack"]
    assert webhook_receiver.received == [("/slack", {"text": "hello"})]
    out = capsys.readouterr().out
    assert "notification to discord failed" in out and "/down" not in out  # the URL (a secret) is not printed
