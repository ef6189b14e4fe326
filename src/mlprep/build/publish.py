"""From a built image to a registry, and back into MLflow: push, record the digest, promote by alias.

Pushes go through the Docker CLI with its own credentials (``docker login``, credential helpers):
this module never sees a password. After a push, the image reference with its digest is written to
MLflow as tags, so MLflow knows which image serves which run and model version.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

from mlprep.build import docker_cli
from mlprep.build.docker_cli import DockerError, Log
from mlprep.build.naming import DIGEST, ValidationError, check_image_name
from mlprep.redaction import redact

IMAGE_TAG = "mlprep.image"  # name:tag of the image serving a run (preprocessing) or a model version (model)
DIGEST_TAG = "mlprep.image.digest"  # the same image as repository@sha256:..., what deployments pin
# The image holding a run's preprocessing and a model version together (mlprep build --with-model),
# written on both the run and the model version, beside (never over) their own images.
WITH_MODEL_IMAGE_TAG = "mlprep.image.with_model"
WITH_MODEL_DIGEST_TAG = "mlprep.image.with_model.digest"
WITH_MODEL = (WITH_MODEL_IMAGE_TAG, WITH_MODEL_DIGEST_TAG)
MODEL_SOURCE = re.compile(r"models:/(?P<name>[^/@]+)/(?P<version>[0-9]+)")
_PUSHED_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")


def registry_host(image: str) -> str | None:
    """The registry of ``image`` when its first component names one (has '.', ':' or is localhost)."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return None


def qualify(image: str, registry: str | None) -> str:
    """``image`` under ``registry`` (``REGISTRY/name``) unless it already names a registry."""
    if not registry or registry_host(image):
        return image
    registry = registry.rstrip("/")
    return check_image_name(f"{registry}/{image}", "registry")


def repository(reference: str) -> str:
    """``host/name`` of ``host/name:tag`` or ``host/name@sha256:...``."""
    name = reference.split("@", 1)[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    return name


@dataclass
class Pushed:
    reference: str  # name:tag
    digest: str  # repository@sha256:...


def push(reference: str, log: Log, cancel: threading.Event | None = None) -> Pushed:
    """``docker push reference``; the pushed digest, or a DockerError with the registry's message."""
    lines: list[str] = []

    def keep(line: str) -> None:
        lines.append(line)
        log(redact(line))

    try:
        docker_cli.run_streamed(["push", reference], keep, cancel)
    except DockerError as exc:
        hint = ""
        if re.search(r"unauthorized|authentication required|denied|no basic auth", str(exc), re.IGNORECASE):
            hint = f" (log in first: docker login {registry_host(reference) or 'REGISTRY'})"
        raise DockerError(redact(f"pushing {reference} failed{hint}: {exc}")) from None
    found = [m.group(1) for line in lines if (m := _PUSHED_DIGEST.search(line))]
    if not found:
        raise DockerError(f"pushing {reference}: the registry answered no digest:\n" + redact("\n".join(lines[-10:])))
    return Pushed(reference, f"{repository(reference)}@{found[-1]}")


def retag(digest_reference: str, alias: str, log: Log, cancel: threading.Event | None = None) -> Pushed:
    """Tag the image ``repository@sha256:...`` as ``repository:alias`` and push it: no rebuild.

    The image is pulled by digest first when this engine does not hold it.
    """
    repo, _, digest = digest_reference.partition("@")
    if not DIGEST.fullmatch(digest):
        raise ValidationError("digest", f"not an image digest reference: {digest_reference!r}")
    if not docker_cli.image_exists(digest_reference):
        log(f"pulling {digest_reference}")
        docker_cli.run_streamed(["pull", digest_reference], log, cancel)
    target = f"{repo}:{alias}"
    docker_cli.run_streamed(["tag", digest_reference, target], log, cancel)
    pushed = push(target, log, cancel)
    if pushed.digest != digest_reference:
        raise DockerError(f"{target} was pushed as {pushed.digest}, not {digest_reference}")
    return pushed


# --- MLflow -----------------------------------------------------------------------------------------


def _client(uri: str | None):  # type: ignore[no-untyped-def]
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def record(
    pushed: Pushed,
    uri: str | None,
    run_id: str | None = None,
    model_source: str | None = None,
    with_model: bool = False,
) -> None:
    """Write the pushed image to MLflow: on the run, and on the model version ``models:/NAME/VERSION``.

    ``with_model``: the image holds both, and is written under its own tags on each.
    """
    client = _client(uri)
    keys = WITH_MODEL if with_model else (IMAGE_TAG, DIGEST_TAG)
    tags = dict(zip(keys, (pushed.reference, pushed.digest), strict=True))
    if run_id:
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
    version = model_version(model_source, uri) if model_source else None
    if version:
        for key, value in tags.items():
            client.set_model_version_tag(version[0], version[1], key, value)


def model_version(source: str, uri: str | None) -> tuple[str, str] | None:
    """(name, version) of ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``; None for other sources."""
    match = MODEL_SOURCE.fullmatch(source)
    if match:
        return match["name"], match["version"]
    alias = re.fullmatch(r"models:/(?P<name>[^/@]+)@(?P<alias>[A-Za-z0-9_-]+)", source)
    if alias:
        found = _client(uri).get_model_version_by_alias(alias["name"], alias["alias"])
        return found.name, str(found.version)
    return None


def images_of(target: str, uri: str | None) -> dict[str, dict[str, str]]:
    """The images MLflow knows for a run id or ``models:/NAME/VERSION``, by kind.

    For a model version: its model image (its own tags) and the preprocessing image (its run's tags).
    ``with-model``: the image of both (``mlprep build --with-model``), of this model version when one is named.
    """
    client = _client(uri)
    found: dict[str, dict[str, str]] = {}
    run_id = target
    if target.startswith("models:/"):
        version = model_version(target, uri)
        if version is None:
            raise ValidationError("target", f"expected models:/NAME/VERSION or models:/NAME@ALIAS, got {target!r}")
        mv = client.get_model_version(*version)
        found["model"] = _pick(mv.tags or {})
        found["with-model"] = _pick(mv.tags or {}, WITH_MODEL)
        run_id = mv.run_id or ""
    if run_id:
        run_tags = client.get_run(run_id).data.tags
        found["preprocessing"] = _pick(run_tags)
        found.setdefault("with-model", _pick(run_tags, WITH_MODEL))
    return {kind: tags for kind, tags in found.items() if tags}


def _pick(tags: dict[str, str], keys: tuple[str, str] = (IMAGE_TAG, DIGEST_TAG)) -> dict[str, str]:
    """The image and digest tags among ``tags``, under the keys ``images`` prints."""
    return {shown: tags[key] for key, shown in zip(keys, (IMAGE_TAG, DIGEST_TAG), strict=True) if key in tags}
