"""The lock files hold every dependency pyproject.toml names (a dependency added without `make lock`
would be missing from images and venvs)."""

from __future__ import annotations

import re
import tomllib

import pytest
from conftest import ROOT
from packaging.requirements import Requirement

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(path) -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", path.read_text(), re.MULTILINE)
    return {normal(name): version for name, version in pins}


def names(requirements: list[str]) -> set[str]:
    return {normal(Requirement(r).name) for r in requirements}


def test_the_runtime_lock_pins_every_runtime_dependency_with_hashes():
    lock = ROOT / "src/mlprep/build/docker/runtime.lock"
    assert names(PROJECT["dependencies"]) <= set(locked(lock))
    blocks = [b for b in re.split(r"\n(?=[A-Za-z])", lock.read_text()) if "==" in b and not b.startswith("#")]
    assert all("--hash=sha256:" in block for block in blocks)
    assert "mlflow" not in locked(lock) and "mlflow-skinny" not in locked(lock)


@pytest.mark.parametrize(
    ("lock", "extras"),
    [
        ("dev", ["dev"]),
        ("workshop", ["workshop"]),
        ("airflow", ["airflow"]),
        ("bench", ["dev", "bench"]),
        ("stack", ["stack"]),
        ("stack-dagster", ["stack"]),
        ("kfp-image", ["kfp-image"]),
    ],
)
def test_each_venv_lock_pins_its_extras(lock, extras):
    wanted = names(PROJECT["dependencies"])
    for extra in extras:
        wanted |= names(r for r in PROJECT["optional-dependencies"][extra] if "[" not in r)
    missing = wanted - set(locked(ROOT / "locks" / f"{lock}.txt"))
    assert not missing, f"locks/{lock}.txt lacks {sorted(missing)}: run make lock"


def test_the_stack_images_share_one_dependency_layer_without_jupyter_or_pytest():
    prefect, dagster = locked(ROOT / "locks" / "stack.txt"), locked(ROOT / "locks" / "stack-dagster.txt")
    assert {name: version for name, version in prefect.items() if dagster.get(name) != version} == {}
    assert not {"jupyter-client", "ipykernel", "nbclient", "pytest", "dagster"} & set(prefect)
    assert "dagster" in dagster
