"""The Kubernetes manifests, rendered with ``kubectl kustomize`` and validated offline: no cluster runs here.

Every object is checked against the schemas of a current Kubernetes release (kubernetes-validate
--strict: unknown fields are errors) and by checkov, whose failed checks must each be skipped with a
reason in the manifests (``checkov.io/skipN`` annotations).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("rest", "kafka-processor", "bridge", "model-server", "build-api")
KUBERNETES_VERSION = "1.37.0"  # the newest release whose schemas kubernetes-validate ships
CHECKOV = "3.3.30"
TOOLS = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mlprep" / "tools"


def checkov_binary() -> Path:
    """checkov in a cached venv of its own (its pins clash with the dev venv's), keyed by version."""
    folder = TOOLS / f"checkov-{CHECKOV}"
    binary = folder / "bin" / "checkov"
    if not binary.exists():
        shutil.rmtree(folder, ignore_errors=True)
        venv.create(folder, with_pip=True)
        result = subprocess.run(
            [str(folder / "bin" / "python"), "-m", "pip", "install", "-q", f"checkov=={CHECKOV}"],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if result.returncode != 0:
            shutil.rmtree(folder, ignore_errors=True)
            pytest.fail(f"cannot install checkov {CHECKOV}:\n{result.stderr[-3000:]}")
    return binary


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, Path]:
    """Each overlay rendered to one file, from a copy given the secrets an operator writes."""
    if shutil.which("kubectl") is None:
        from infra import _apt_install

        _apt_install("kubernetes-client")
    copy = tmp_path_factory.mktemp("kubernetes") / "kubernetes"
    shutil.copytree(KUBERNETES, copy)
    secrets = copy / "overlays" / "build-api" / "secrets"
    secrets.mkdir()
    (secrets / "build-api-token").write_text("token-for-rendering")
    (secrets / "mlflow-webhook-secret").write_text("secret-for-rendering")
    (secrets / "docker-config.json").write_text(json.dumps({"auths": {}}))
    out = copy.parent / "rendered"
    out.mkdir()
    files = {}
    for overlay in OVERLAYS:
        result = subprocess.run(
            ["kubectl", "kustomize", str(copy / "overlays" / overlay)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, f"{overlay}: {result.stderr}"
        files[overlay] = out / f"{overlay}.yaml"
        files[overlay].write_text(result.stdout)
    return files


def objects(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_every_object_is_valid_for_a_current_kubernetes(rendered):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kubernetes_validate",
            "--strict",
            "--kubernetes-version",
            KUBERNETES_VERSION,
            *map(str, rendered.values()),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    count = sum(len(objects(path)) for path in rendered.values())
    assert len([line for line in lines if line.startswith("INFO")]) == count - 1, result.stdout  # all but KEDA's
    assert any("ScaledObject" in line for line in lines if line.startswith("WARN")), result.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_deployment_is_probed_bounded_and_unprivileged(rendered, overlay):
    deployments = [o for o in objects(rendered[overlay]) if o["kind"] == "Deployment"]
    assert len(deployments) == 1
    pod = deployments[0]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    liveness, readiness = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
    assert liveness["path"] == "/health"
    # MLflow's scoring server has no /ready; /ping is its readiness
    assert readiness["path"] == ("/ping" if overlay == "model-server" else "/ready")
    assert set(container["resources"]) == {"requests", "limits"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
    assert "emptyDir" in next(v for v in pod["volumes"] if v["name"] == tmp["name"])
    assert all(
        o["metadata"].get("namespace") == "mlprep" for o in objects(rendered[overlay]) if o["kind"] != "Namespace"
    )


def test_the_kafka_processor_scales_on_consumer_lag(rendered):
    scaled = next(o for o in objects(rendered["kafka-processor"]) if o["kind"] == "ScaledObject")
    deployment = next(o for o in objects(rendered["kafka-processor"]) if o["kind"] == "Deployment")
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (trigger,) = scaled["spec"]["triggers"]
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert trigger["type"] == "kafka" and trigger["metadata"]["consumerGroup"] == env["CONSUMER_GROUP_ID"]
    assert trigger["metadata"]["topic"] == env["INPUT_TOPIC"]


def test_the_build_api_keeps_its_database_and_secrets_out_of_the_manifests(rendered):
    found = objects(rendered["build-api"])
    kinds = {o["kind"] for o in found}
    assert {"PersistentVolumeClaim", "Secret", "Deployment", "Service"} <= kinds
    secret_names = {o["metadata"]["name"] for o in found if o["kind"] == "Secret"}
    deployment = next(o for o in found if o["kind"] == "Deployment")
    refs = deployment["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    assert any(r.get("secretRef", {}).get("name") in secret_names for r in refs)  # hashed names are followed
    assert (KUBERNETES / ".gitignore").read_text().count("secrets/") == 1  # never committed


def test_checkov_finds_nothing_unjustified(rendered):
    folder = next(iter(rendered.values())).parent
    result = subprocess.run(
        [
            str(checkov_binary()),
            "-d",
            str(folder),
            "--framework",
            "kubernetes",
            "-o",
            "json",
            "--quiet",
            "--compact",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},  # offline: no guideline download
    )
    assert result.stdout.strip(), result.stderr[-3000:]
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['check_name']})"
        for report in reports
        for c in report.get("results", {}).get("failed_checks", [])
    ]
    assert not failed, "\n".join(failed)
    skipped = [c for report in reports for c in report.get("results", {}).get("skipped_checks", [])]
    assert all(c.get("suppress_comment") for c in skipped)  # every skip says why
    assert sum(r.get("summary", {}).get("passed", 0) for r in reports) > 100
