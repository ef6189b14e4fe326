"""Settings as users write them: plain or MLPREP_-prefixed names, comma lists, one clear line when wrong."""

from __future__ import annotations

import pytest
from conftest import IDENTITY, run_cli

from mlprep.settings import SettingsProblem, load_settings


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("PASSTHROUGH_FIELDS", "API_PORT", "KAFKA_CONSUMER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"MLPREP_{name}", raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("value", "expected"),
    [("objectId,candid", ["objectId", "candid"]), ('["objectId", "candid"]', ["objectId", "candid"]), ("", [])],
)
def test_list_settings_take_commas_or_json(clean_env, value, expected):
    clean_env.setenv("PASSTHROUGH_FIELDS", value)
    assert load_settings().passthrough_fields == expected


def test_the_prefixed_name_works_and_wins(clean_env):
    clean_env.setenv("MLPREP_API_PORT", "9000")
    assert load_settings().api_port == 9000
    clean_env.setenv("API_PORT", "8001")
    assert load_settings().api_port == 9000


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("API_PORT", "eighty", "API_PORT: Input should be a valid integer"),
        ("API_PORT", "70000", "API_PORT: Input should be less than or equal to 65535"),
        ("KAFKA_CONSUMER_CONFIG", "fetch.min.bytes=1", "KAFKA_CONSUMER_CONFIG: not valid JSON"),
        ("PASSTHROUGH_FIELDS", "[objectId", "PASSTHROUGH_FIELDS"),
    ],
)
def test_a_bad_setting_is_one_line_naming_the_variable(clean_env, tmp_path, name, value, words):
    clean_env.setenv(name, value)
    with pytest.raises(SettingsProblem, match=words):
        load_settings()
    (tmp_path / "preprocessing.py").write_text(IDENTITY)
    result = run_cli("run", "-p", str(tmp_path), env={name: value})
    err = result.stderr.decode()
    assert result.returncode == 2
    assert err.count("\n") == 1 and words in err and "Traceback" not in err
