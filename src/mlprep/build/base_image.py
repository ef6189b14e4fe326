"""A Python base image made without any registry: debootstrap a Debian release with python3, copy
the host's CA bundle in (package indexes behind TLS-intercepting proxies), ``docker import``.

For air-gapped hosts and for this project's tests; cached by tag (an existing image is reused).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from mlprep.build import docker_cli
from mlprep.build.docker_cli import Log
from mlprep.build.naming import ValidationError, check_image_reference
from mlprep.errors import MlprepError

SUITES = {"3.11": "bookworm", "3.13": "trixie"}
PACKAGES = "python3,python3-venv,python3-pip,ca-certificates"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
LABEL = "io.mlprep.base-image"


def default_tag(python_version: str) -> str:
    return f"mlprep-base:{python_version}-{suite_for(python_version)}"


def suite_for(python_version: str) -> str:
    try:
        return SUITES[python_version]
    except KeyError as exc:
        known = ", ".join(f"{v} ({s})" for v, s in SUITES.items())
        raise ValidationError(
            "python_version", f"no Debian release ships Python {python_version} as python3; choose one of {known}"
        ) from exc


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def build_base_image(
    python_version: str = "3.11",
    tag: str | None = None,
    mirror: str | None = None,
    force: bool = False,
    log: Log = _stderr,
) -> str:
    """The tag of a local base image with ``python_version``; built only when missing (or ``force``)."""
    suite = suite_for(python_version)
    reference = check_image_reference(tag or default_tag(python_version), "tag")
    docker_cli.engine_version()
    if not force and docker_cli.image_exists(reference):
        log(f"base image {reference} is already there (use --force to rebuild it)")
        return reference
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise MlprepError("debootstrap is not installed (Debian: apt-get install debootstrap)")
    if os.geteuid() != 0:
        raise MlprepError("debootstrap needs root: run `mlprep base-image` as root (sudo)")
    with tempfile.TemporaryDirectory(prefix="mlprep-rootfs-") as scratch:
        root = Path(scratch) / "rootfs"
        command = [debootstrap, "--variant=minbase", f"--include={PACKAGES}", suite, str(root)]
        if mirror:
            command.append(mirror)
        log(f"debootstrap {suite} with {PACKAGES} (about a minute)")
        _stream(command, log)
        if CA_BUNDLE.is_file():
            shutil.copyfile(CA_BUNDLE, root / "etc/ssl/certs/ca-certificates.crt")
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (root / cache).glob("*.deb" if "archives" in cache else "*_*"):
                item.unlink(missing_ok=True)
        changes = [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
            f"LABEL {LABEL}=python{python_version}-{suite}",
            'CMD ["python3"]',
        ]
        args = [docker_cli.docker_binary(), "import"]
        for change in changes:
            args += ["-c", change]
        args += ["-", reference]
        log(f"docker import {reference}")
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(args, stdin=tar.stdout, capture_output=True, text=True, check=False)
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait()
        if imported.returncode != 0:
            raise MlprepError(f"docker import failed: {imported.stderr.strip()}")
    log(f"base image {reference} ready ({docker_cli.image_size(reference) / 1e6:.0f} MB)")
    return reference


def _stream(command: list[str], log: Log) -> None:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    tail: list[str] = []
    for line in process.stdout:
        log(line.rstrip())
        tail = [*tail[-20:], line.rstrip()]
    if process.wait() != 0:
        raise MlprepError("debootstrap failed:\n" + "\n".join(tail))
