"""Validation before any request, and the automatic image name from a run's tags."""

from __future__ import annotations

import pytest

from mlprep.build.naming import (
    ValidationError,
    auto_image_name,
    check_artifact_path,
    check_image_name,
    check_image_reference,
    check_run_id,
    check_tag,
    without_credentials,
)


def test_auto_name_from_tags_is_a_valid_docker_name():
    assert (
        auto_image_name({"type": "preprocessing", "model_name": "model", "version": "v1"}) == "preprocessing-model-v1"
    )
    tags = {"type": "Preprocessing", "model_name": "Remote LR 0.1", "version": "5AF69EE1"}
    assert auto_image_name(tags) == "preprocessing-remote-lr-0.1-5af69ee1"
    assert auto_image_name({"type": "x", "model_name": "a__b--c", "version": "1.0.0"}) == "x-a_b-c-1.0.0"


def test_missing_tags_are_each_named_with_how_to_set_them():
    with pytest.raises(ValidationError) as info:
        auto_image_name({"type": "preprocessing"})
    message = str(info.value)
    assert "'model_name'" in message and "'version'" in message
    assert "mlflow.set_tag('model_name', ...)" in message


@pytest.mark.parametrize("run_id", ["../etc", "a/b", "", "x" * 65, "abc def", "-abc", "$(id)"])
def test_bad_run_ids_are_refused(run_id):
    with pytest.raises(ValidationError) as info:
        check_run_id(run_id)
    assert info.value.field == "run_id"


def test_good_run_id():
    assert check_run_id("e6c1131f4673449aa688ed1ffc3abbbe")


@pytest.mark.parametrize("path", ["../x.py", "/etc/passwd", "code/../../x.py", "a\\b.py", "~/x.py", ""])
def test_bad_artifact_paths_are_refused(path):
    with pytest.raises(ValidationError):
        check_artifact_path(path)


def test_good_artifact_paths():
    assert check_artifact_path("code/preprocessing.py") == "code/preprocessing.py"
    assert check_artifact_path("./preprocessing.py") == "preprocessing.py"


@pytest.mark.parametrize("name", ["UPPER", "-x", "a b", "a:b", "x/", "a..b", ""])
def test_bad_image_names(name):
    with pytest.raises(ValidationError):
        check_image_name(name)


@pytest.mark.parametrize("name", ["preprocessing-model-v1", "registry.local:5000/team/img", "a_b.c"])
def test_good_image_names(name):
    assert check_image_name(name) == name


def test_tags_and_references():
    assert check_tag("v1.0.0") == "v1.0.0"
    for bad in (".x", "-x", "a b", "x" * 129):
        with pytest.raises(ValidationError):
            check_tag(bad)
    assert check_image_reference("python:3.11-slim")
    assert check_image_reference("localhost:5000/base/python:3.11")
    with pytest.raises(ValidationError) as info:
        check_image_reference("python:3.11 slim; rm -rf /")
    assert info.value.field == "base_image"


def test_credentials_never_leave_a_uri():
    assert (
        without_credentials("https://user:secret@mlflow.example:5000/path?token=abc")
        == "https://mlflow.example:5000/path"
    )
    assert without_credentials("sqlite:///tmp/mlflow.db") == "sqlite:///tmp/mlflow.db"


def test_one_naming_rule_for_every_image():
    from mlprep.build.naming import image_name

    assert image_name("model", "Churn Model", "3") == "model-churn-model-3"
    for name, version in [("---", "1"), ("m", "--"), ("é", "1")]:
        with pytest.raises(ValidationError, match="holds no letter or digit"):
            image_name("preprocessing", name, version)
    with pytest.raises(ValidationError) as info:
        image_name("preprocessing", "x" * 100_000, "1")
    assert len(str(info.value)) < 300  # the refused value is not echoed back whole
