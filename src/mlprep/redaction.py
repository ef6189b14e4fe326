"""Credentials never leave the process: every URL in a message, log line, header or stored error
goes through ``redact`` first."""

from __future__ import annotations

import logging
import re

# scheme://user:password@host or scheme://token@host anywhere in a text (the user part stops at
# whitespace, quotes and the characters that end a URL authority).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+._\-]*://)(?P<userinfo>[^\s/?#@'\"<>]+)@")
# query parameters that carry secrets: ?token=…, &password=…, &api_key=…
_SECRET_QUERY = re.compile(
    r"(?P<name>[?&;](?:[A-Za-z0-9_\-]*(?:token|password|passwd|secret|key|signature|sig|auth|credential)"
    r"[A-Za-z0-9_\-]*))=(?P<value>[^&#\s'\"]*)",
    re.IGNORECASE,
)
MASK = "***"


def redact(text: str) -> str:
    """``text`` with the credentials of every URL in it masked (``https://***@host/?token=***``)."""
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    return _SECRET_QUERY.sub(lambda m: f"{m['name']}={MASK}", text)


class RedactingFilter(logging.Filter):
    """Redacts each record's message, whichever library logs it (httpx logs every request's URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def redact_logs(*names: str) -> None:
    """Put a ``RedactingFilter`` on every handler of the root logger and of the loggers ``names``."""
    for name in ("", *names):
        for handler in logging.getLogger(name or None).handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
