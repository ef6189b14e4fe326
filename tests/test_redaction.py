"""Credentials in URLs are masked wherever a message can carry them."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlprep.redaction import redact, redact_logs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://user:pass@host:5000/x", "http://***@host:5000/x"),
        ("API request to https://tok@h/api failed", "API request to https://***@h/api failed"),
        ("kafka SASL_SSL://u:p@b:9092", "kafka SASL_SSL://***@b:9092"),
        ("GET /x?token=abc&page=2", "GET /x?token=***&page=2"),
        ("https://h/x?api_key=zz#top", "https://h/x?api_key=***#top"),
        ("sqlite:///a.db and user@example.org", "sqlite:///a.db and user@example.org"),
        ("no url at all", "no url at all"),
    ],
)
def test_redact(text, expected):
    assert redact(text) == expected


secrets = st.text(st.sampled_from("abcXYZ019-_.~%!$&'()*+,;=@:\"<>"), min_size=1, max_size=20)


@given(user=secrets, password=secrets, before=st.text(max_size=20), after=st.text(max_size=20))
def test_no_password_survives_in_any_url(user, password, before, after):
    text = f"{before} http://{user}:{password}@127.0.0.1:5000/path {after}"
    safe = redact(text)
    assert "http://***@127.0.0.1:5000/path" in safe
    assert f"{user}:{password}@" not in safe


def test_log_records_and_tracebacks_are_redacted(caplog):
    redact_logs()
    log = logging.getLogger("mlprep.test")
    with caplog.at_level(logging.INFO):
        log.info("calling %s", "http://alice:pw@h/")
        try:
            raise ValueError("refused by http://alice:pw@h/")
        except ValueError:
            log.exception("failed")
    text = caplog.text
    assert "http://***@h/" in text
    assert "alice" not in text and ":pw@" not in text
