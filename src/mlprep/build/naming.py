"""Validation of what users pass to fetch and build (before any request or command), and the
automatic image name ``{type}-{model_name}-{version}`` made from a run's tags."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import urlsplit, urlunsplit

from mlprep.errors import MlprepError

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
# Docker reference grammar: [registry[:port]/]path-component(/path-component)*, lowercase components.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REGISTRY = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?/)"
IMAGE_NAME = re.compile(rf"{_REGISTRY}?{_COMPONENT}(?:/{_COMPONENT})*")
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
NAME_TAGS = ("type", "model_name", "version")
AUTO = "auto"


class ValidationError(MlprepError, ValueError):
    """An argument that is refused before anything is sent or run; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def check_run_id(run_id: str) -> str:
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
        raise ValidationError(
            "run_id",
            f"invalid run id {shown(run_id)}: expected letters, digits, '-' or '_' "
            "(an MLflow run id is 32 hexadecimal characters)",
        )
    return run_id


def check_artifact_path(path: str, field: str = "preprocessing_path") -> str:
    """A relative POSIX path inside the run's artifacts: no '..', not absolute, no backslash."""
    if not isinstance(path, str) or not path or "\\" in path or "\x00" in path:
        raise ValidationError(field, f"invalid artifact path {shown(path)}")
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or path.startswith("~"):
        raise ValidationError(
            field, f"artifact path {shown(path)} must be relative to the run's artifacts, without '..'"
        )
    return str(pure)


def check_image_name(name: str, field: str = "image_name") -> str:
    if not isinstance(name, str) or len(name) > 255 or not IMAGE_NAME.fullmatch(name):
        raise ValidationError(
            field,
            f"invalid image name {shown(name)}: lowercase letters, digits and "
            "separators ('.', '_', '-', '/'), e.g. preprocessing-churn-v1",
        )
    return name


def check_tag(tag: str, field: str = "tag") -> str:
    if not isinstance(tag, str) or not TAG.fullmatch(tag):
        raise ValidationError(
            field, f"invalid tag {shown(tag)}: up to 128 letters, digits, '_', '.', '-', not starting with '.' or '-'"
        )
    return tag


def check_image_reference(reference: str, field: str = "base_image") -> str:
    """``name[:tag][@sha256:digest]``, as ``FROM`` takes it."""
    if not isinstance(reference, str):
        raise ValidationError(field, f"invalid image reference {shown(reference)}")
    name, _, digest = reference.partition("@")
    if digest and not DIGEST.fullmatch(digest):
        raise ValidationError(field, f"invalid image digest in {shown(reference)}")
    tag = ""
    if ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)
    check_image_name(name, field)
    if tag:
        check_tag(tag, field)
    return reference


def sanitize_component(text: str) -> str:
    """``Remote LR 0.1`` -> ``remote-lr-0.1``: a valid repository path component."""
    lowered = re.sub(r"[^a-z0-9._-]+", "-", text.strip().lower())
    lowered = re.sub(r"[._-]*([._-])[._-]*", r"\1", lowered)  # one separator at a time
    return lowered.strip("._-")


def image_name(kind: str, model_name: object, version: object) -> str:
    """``{kind}-{model_name}-{version}``, each part made a valid name component (``Remote LR`` ->
    ``remote-lr``); the one rule for naming images, whether from a run's tags, a registry event or CI."""
    parts = {"type": kind, "model_name": model_name, "version": version}
    components = []
    for field, raw in parts.items():
        component = sanitize_component(str(raw))
        if not component:
            raise ValidationError("image_name", f"cannot name the image: {field} {shown(raw)} holds no letter or digit")
        components.append(component)
    return check_image_name("-".join(components))


def auto_image_name(tags: dict[str, str]) -> str:
    """``{type}-{model_name}-{version}`` from a run's tags; every missing tag is named."""
    missing = [name for name in NAME_TAGS if not str(tags.get(name, "")).strip()]
    if missing:
        how = ", ".join(f"mlflow.set_tag({shown(name)}, ...)" for name in missing)
        raise ValidationError(
            "image_name",
            f"cannot name the image automatically: the run has no tag {', '.join(repr(m) for m in missing)}; "
            f"set it when logging ({how}) or pass an image name instead of 'auto'",
        )
    return image_name(*(tags[key] for key in NAME_TAGS))


def shown(value: object, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: a 100 000-character name must not echo back whole."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(str(value))} characters)"


def without_credentials(uri: str | None) -> str | None:
    """A tracking URI safe to print or bake into a label: no user, password or query secrets."""
    if not uri:
        return uri
    parts = urlsplit(uri)
    if not parts.netloc:  # sqlite:///path, file:/path: no host, no credentials
        return uri
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def main(argv: list[str] | None = None) -> int:
    """``python -m mlprep.build.naming suffix NAME VERSION``: ``suffix=<name>-<version>`` for CI outputs."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] != "suffix":
        print("usage: python -m mlprep.build.naming suffix MODEL_NAME MODEL_VERSION", file=sys.stderr)
        return 2
    print(f"suffix={image_name('preprocessing', args[1], args[2]).removeprefix('preprocessing-')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
