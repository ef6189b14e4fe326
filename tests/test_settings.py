"""Settings as users write them: plain or MLPREP_-prefixed names, comma lists, one clear line when wrong."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import IDENTITY, run_cli

from mlprep.settings import Settings, SettingsProblem, load_settings
from mlprep.settings_defaults import DEFAULTS, DefaultSettings, environment_sets_any


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


def test_the_defaults_read_without_pydantic_are_the_settings_defaults():
    expected = {name: field.get_default(call_default_factory=True) for name, field in Settings.model_fields.items()}
    assert dict(DEFAULTS) == expected, "mlprep/settings_defaults.py must list every setting with its default"
    assert vars(DefaultSettings()) == expected


@pytest.mark.parametrize(
    ("environ", "sets"),
    [
        ({"PATH": "/bin", "HOME": "/root", "MLPREP_UNKNOWN": "1"}, False),
        ({"MAX_RECORD_BYTES": "10"}, True),
        ({"mlprep_max_record_bytes": "10"}, True),
        ({"Kafka_Enabled": ""}, True),
        ({"MLPREP_BASE_IMAGE": "base:1"}, True),  # a setting whose own name starts with the prefix
    ],
)
def test_any_variable_named_like_a_setting_counts(environ, sets):
    assert environment_sets_any(environ) is sets


def test_batch_mode_starts_without_the_settings_model_when_nothing_is_set(tmp_path):
    """`mlprep run` skips pydantic's import (a large part of a short run) when the environment sets nothing,
    and the other front ends' libraries; a variable that names a setting still gets validated (above)."""
    (tmp_path / "preprocessing.py").write_text(IDENTITY)
    (tmp_path / "in.jsonl").write_bytes(b'{"a": 1}\n')
    env = {name: value for name, value in os.environ.items() if not environment_sets_any({name: value})}
    code = (
        "import sys\nfrom mlprep.cli import main\n"
        f"status = main(['run', '-p', {str(tmp_path)!r}, {str(tmp_path / 'in.jsonl')!r}])\n"
        "heavy = ('pydantic', 'pydantic_settings', 'fastavro', 'fastapi', 'confluent_kafka', 'prometheus_client')\n"
        "print(sorted({name.split('.')[0] for name in sys.modules} & set(heavy)), status, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=60)
    assert result.stdout == b'{"a":1}\n'
    assert result.stderr.decode().splitlines()[-1] == "[] 0"
