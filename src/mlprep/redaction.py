"""Credentials never leave the process: every URL in a message, log line, header or stored error
goes through ``redact`` first."""

from __future__ import annotations

import logging
import re

# scheme://user:password@host or scheme://token@host anywhere in a text. The user part runs to the
# last '@' before the path (a raw '@' in a password must not leave its tail behind).
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+._\-]*://)(?P<userinfo>[^\s/?#]+)@")
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


def redact_logs() -> None:
    """Mask URL credentials in every log record this process creates, whatever logger or handler
    (uvicorn's, confluent-kafka's, MLflow's) writes it, tracebacks included."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacting", False):
        return

    def factory(*args: object, **kwargs: object) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if isinstance(record.args, tuple):  # kept a tuple: formatters such as uvicorn's unpack it
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        message = record.getMessage()
        safe = redact(message)  # an argument that is no string (an exception, a URL object) may hold one
        if safe != message:
            record.msg, record.args = safe, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(_FORMATTER.formatException(record.exc_info))
        return record

    factory.redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


_FORMATTER = logging.Formatter()
