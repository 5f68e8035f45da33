"""Structured logs: logfmt (default) or JSON lines, with the fields a probe line carries.

Every field of every line goes through the redactor in force (``exporter.redact``): a failed
probe's ``error=`` may quote a URL with credentials, a traceback may hold a header.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from exporter.redact import BY_SHAPE, Redactor

# Attributes every LogRecord has; anything else on a record came in through ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_redactor = BY_SHAPE  # replaced by the one of the config in force


def redact_with(redactor: Redactor) -> None:
    """Redact every log line from now on with ``redactor`` (the config in force knows its secrets)."""
    global _redactor
    _redactor = redactor


def _fields(record: logging.LogRecord) -> dict:
    redactor = _redactor
    fields = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "source": f"{record.module}.py:{record.lineno}",
        "msg": redactor.text(record.getMessage()),
    }
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("_"):
            fields[key] = redactor.field(key, value)
    if record.exc_info:
        fields["err"] = redactor.text(logging.Formatter().formatException(record.exc_info))
    return fields


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_logfmt_value(value)}" for key, value in _fields(record).items())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), default=str)


def _logfmt_value(value) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n\t'):
        return json.dumps(text)
    return text


def setup_logging(level: str = "info", fmt: str = "logfmt") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # stem and APScheduler narrate every event at INFO; keep their warnings only
    for noisy in ("stem", "apscheduler", "urllib3", "selenium"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
