"""Download a run's preprocessing code from MLflow: the entry file, every Python file of its folder
(and sub-packages, folders with ``__init__.py``), and ``requirements.txt``.

Credentials come through MLflow's own variables (``MLFLOW_TRACKING_USERNAME``/``PASSWORD``/``TOKEN``)
and never appear in messages: URIs are shown without them.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import orjson

from mlprep.build.naming import check_artifact_path, check_run_id, without_credentials
from mlprep.errors import MlprepError
from mlprep.redaction import redact
from mlprep.runtime.loader import ENTRY_FILE

Log = Callable[[str], None]


class FetchError(MlprepError):
    """The run or its artifacts cannot be fetched; the message says what to check."""


@dataclass
class FetchResult:
    folder: Path
    run_id: str
    tags: dict[str, str]
    files: list[str] = field(default_factory=list)
    requirements: Path | None = None
    tracking_uri: str | None = None


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, else MLflow's default (a local sqlite store)."""
    import mlflow

    return mlflow.get_tracking_uri()


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast (not after MLflow's minutes of retries) when an HTTP tracking server is down."""
    if not uri.startswith(("http://", "https://")):
        return
    safe = without_credentials(uri)
    try:
        with urllib.request.urlopen(f"{safe.rstrip('/')}/health", timeout=timeout):  # noqa: S310 - http(s) only
            return
    except urllib.error.HTTPError:
        return  # it answered: reachable (auth or routing is checked by the real calls)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise FetchError(
            f"cannot reach the MLflow tracking server at {safe} ({reason}); is it running, and is "
            "MLFLOW_TRACKING_URI right?"
        ) from exc


def fetch(
    run_id: str,
    dest: str | Path,
    preprocessing_path: str = ENTRY_FILE,
    uri: str | None = None,
    log: Log = _stderr,
) -> FetchResult:
    """Download the preprocessing of ``run_id`` into ``dest`` and describe the run in run_info.json."""
    check_run_id(run_id)
    entry = PurePosixPath(check_artifact_path(preprocessing_path))
    if entry.suffix != ".py":
        raise FetchError(f"--preprocessing-path must name a .py file, not {preprocessing_path!r}")
    uri = uri or tracking_uri()
    safe_uri = without_credentials(uri)
    check_reachable(uri)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(exc).lower():
            raise FetchError(
                f"run {run_id} not found on the tracking server {safe_uri}: check the run id and MLFLOW_TRACKING_URI"
            ) from exc
        raise FetchError(f"cannot read run {run_id} from {safe_uri}: {_first_line(exc)}") from exc

    folder = str(entry.parent) if str(entry.parent) != "." else ""
    files = _python_files(client, run_id, folder)
    if str(entry) not in files:
        held = _all_artifacts(client, run_id)
        listing = ", ".join(held[:50]) + (" ..." if len(held) > 50 else "") if held else "no artifacts at all"
        raise FetchError(
            f"run {run_id} has no artifact {entry} (it holds: {listing}); pass --preprocessing-path with "
            "the path of the preprocessing file among the run's artifacts"
        )
    requirements = _requirements_path(client, run_id, folder)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    fetched: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mlprep-fetch-") as scratch:
        for artifact in [*files, *([requirements] if requirements else [])]:
            if artifact == requirements:
                relative = PurePosixPath("requirements.txt")
            else:
                relative = PurePosixPath(artifact).relative_to(folder) if folder else PurePosixPath(artifact)
            check_artifact_path(str(relative))
            local = client.download_artifacts(run_id, artifact, scratch)
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, target)
            fetched.append(str(relative))
            log(f"fetched {artifact}")
    if entry.name != ENTRY_FILE:  # the loader looks for preprocessing.py
        shutil.copyfile(dest / entry.name, dest / ENTRY_FILE)
    tags = dict(run.data.tags)
    info: dict[str, Any] = {
        "run_id": run_id,
        "experiment_id": run.info.experiment_id,
        "model_name": tags.get("model_name"),
        "version": tags.get("version"),
        "type": tags.get("type"),
        "preprocessing_path": str(entry),
        "tracking_uri": safe_uri,
    }
    (dest / "run_info.json").write_bytes(orjson.dumps(info, option=orjson.OPT_INDENT_2))
    return FetchResult(dest, run_id, tags, fetched, dest / "requirements.txt" if requirements else None, safe_uri)


def _python_files(client: Any, run_id: str, folder: str) -> list[str]:
    """The .py files of ``folder`` and of its sub-packages (sub-folders holding __init__.py)."""
    found: list[str] = []
    for item in client.list_artifacts(run_id, folder or None):
        if not item.is_dir:
            if item.path.endswith(".py"):
                found.append(item.path)
            continue
        inner = client.list_artifacts(run_id, item.path)
        if any(not i.is_dir and PurePosixPath(i.path).name == "__init__.py" for i in inner):
            found.extend(_python_files(client, run_id, item.path))
    return found


def _requirements_path(client: Any, run_id: str, folder: str) -> str | None:
    for candidate_folder in dict.fromkeys([folder, ""]):
        entries = client.list_artifacts(run_id, candidate_folder or None)
        for item in entries:
            if not item.is_dir and PurePosixPath(item.path).name == "requirements.txt":
                return item.path
    return None


def _all_artifacts(client: Any, run_id: str, folder: str | None = None, limit: int = 200) -> list[str]:
    paths: list[str] = []
    for item in client.list_artifacts(run_id, folder):
        if len(paths) >= limit:
            break
        if item.is_dir:
            paths.extend(_all_artifacts(client, run_id, item.path, limit - len(paths)))
        else:
            paths.append(item.path)
    return paths


def _first_line(exc: BaseException) -> str:
    """The first line of an MLflow error, credentials masked (MLflow's messages hold the full URL)."""
    return redact(str(exc).strip().splitlines()[0]) if str(exc).strip() else type(exc).__name__
