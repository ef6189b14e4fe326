"""`mlprep fetch` against a real MLflow tracking server."""

from __future__ import annotations

import json
import time

from conftest import FakeTracking, run_cli


def test_fetch_root_layout(mlflow_server, example_run, tmp_path):
    result = run_cli("fetch", example_run, str(tmp_path / "code"), env=mlflow_server.env())
    assert result.returncode == 0, result.stderr
    files = sorted(p.relative_to(tmp_path / "code").as_posix() for p in (tmp_path / "code").rglob("*") if p.is_file())
    assert files == [
        "code/__init__.py",
        "code/preprocessing.py",
        "code/processor.py",
        "preprocessing.py",
        "requirements.txt",
        "run_info.json",
    ]
    info = json.loads((tmp_path / "code" / "run_info.json").read_text())
    assert info["run_id"] == example_run
    assert (info["model_name"], info["version"], info["type"]) == ("testmodel", "v1", "preprocessing")
    ran = run_cli("run", "-p", str(tmp_path / "code"), stdin=b'{"Contract": "Two Year"}')
    assert json.loads(ran.stdout) == {"contract": "two_year", "preprocessed": True}


def test_fetch_code_layout_takes_siblings_and_root_requirements(mlflow_server, example_run, tmp_path):
    result = run_cli(
        "fetch",
        example_run,
        str(tmp_path / "c"),
        "--preprocessing-path",
        "code/preprocessing.py",
        env=mlflow_server.env(),
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == [
        "__init__.py",
        "preprocessing.py",
        "processor.py",
        "requirements.txt",
        "run_info.json",
    ]
    assert "python-dateutil" in (tmp_path / "c" / "requirements.txt").read_text()
    ran = run_cli("run", "-p", str(tmp_path / "c"), stdin=b'{"Signup_Date": "March 4, 2021"}')
    assert json.loads(ran.stdout) == {"signup_date": "March 4, 2021", "signup_year": 2021, "layout": "code"}


def test_missing_artifact_lists_what_the_run_holds(mlflow_server, example_run, tmp_path):
    result = run_cli(
        "fetch", example_run, str(tmp_path / "x"), "--preprocessing-path", "src/prep.py", env=mlflow_server.env()
    )
    assert result.returncode == 2
    err = result.stderr.decode()
    assert "has no artifact src/prep.py" in err
    assert "code/processor.py" in err and "requirements.txt" in err


def test_unknown_run(mlflow_server, tmp_path):
    result = run_cli("fetch", "0" * 32, str(tmp_path / "x"), env=mlflow_server.env())
    assert result.returncode == 2
    assert f"run {'0' * 32} not found on the tracking server {mlflow_server.url}" in result.stderr.decode()


def test_unreachable_server_fails_fast_without_printing_credentials(tmp_path):
    from conftest import free_port

    uri = f"http://alice:s3cret-pw@127.0.0.1:{free_port()}"
    begin = time.monotonic()
    result = run_cli(
        "fetch",
        "a" * 32,
        str(tmp_path / "x"),
        env={"MLFLOW_TRACKING_URI": uri, "MLFLOW_TRACKING_PASSWORD": "s3cret-pw"},
    )
    assert time.monotonic() - begin < 20
    err = result.stderr.decode()
    assert result.returncode == 2
    assert "cannot reach the MLflow tracking server" in err
    assert "s3cret-pw" not in err and "alice" not in err


def test_invalid_run_id_or_path_is_refused_before_any_request(tmp_path):
    from conftest import free_port

    env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}  # nothing listens: a request would say so
    bad_id = run_cli("fetch", "../../etc", str(tmp_path / "x"), env=env)
    assert "invalid run id" in bad_id.stderr.decode()
    bad_path = run_cli("fetch", "a" * 32, str(tmp_path / "x"), "--preprocessing-path", "../secret.py", env=env)
    assert "without '..'" in bad_path.stderr.decode()
    absolute = run_cli("fetch", "a" * 32, str(tmp_path / "x"), "--preprocessing-path", "/etc/x.py", env=env)
    assert "must be relative" in absolute.stderr.decode()


def test_mlflow_errors_are_shown_without_the_password_of_the_uri(tmp_path):
    """MLflow's own message names the full URL of the failed call: it is shown redacted."""
    tracking = FakeTracking()
    try:
        uri = f"http://alice:s3cret-pw@127.0.0.1:{tracking.port}"
        result = run_cli("fetch", "a" * 32, str(tmp_path / "x"), env={"MLFLOW_TRACKING_URI": uri})
    finally:
        tracking.stop()
    err = result.stderr.decode()
    assert result.returncode == 2
    assert f"http://***@127.0.0.1:{tracking.port}/api/2.0/mlflow/runs/get" in err
    assert "s3cret-pw" not in err and "alice" not in err
