"""``/api/v1/probes``: single probes as JSON, the long tail of the target × exit drill-down.

    GET /api/v1/probes?target=forum&verdict=challenge&since=1h
    GET /api/v1/probes?exit=<fingerprint>&route=tor&since=2025-01-02T03:00:00Z&limit=500

Filters (all optional, every one given must match): ``target``, ``exit`` (a
fingerprint, ``$`` and case optional), ``fetcher``, ``route`` (tor, direct, onion),
``verdict`` (ok, widget, challenge, block, error, or none for probes without an
answer), ``since`` and ``until`` (unix seconds, RFC 3339, or a duration such as
``1h`` meaning that long ago).  Newest first, at most ``limit`` probes (1 to
1000, default 100); ``truncated`` says whether more matched.  The answer has
the shape of Prometheus' HTTP API (``status``, ``data`` or ``errorType`` and
``error``); the records are the probe pages' (``exporter.store.probe_record``),
kept for ``history.retention``.
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import parse_qs

from exporter.config_yaml import parse_duration
from exporter.values import Route, VerdictKind

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
FILTERS = ("target", "exit", "fetcher", "route", "verdict")
PARAMETERS = (*FILTERS, "since", "until", "limit")
_FINGERPRINT = re.compile(r"\$?[0-9A-Fa-f]{40}")


class Probes(Protocol):
    def probes(self, limit: int, since: float | None, until: float | None, **equal: str | None) -> list[dict]: ...


class BadQuery(ValueError):
    """A query the API cannot answer; the message names the parameter."""


def answer(source: Probes, query: str, now: float | None = None) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON document) for the query string ``query``."""
    try:
        limit, since, until, equal = parse(query, time.time() if now is None else now)
    except BadQuery as exc:
        return 400, {"status": "error", "errorType": "bad_data", "error": str(exc)}
    found = source.probes(limit + 1, since, until, **equal)
    return 200, {"status": "success",
                 "data": {"probes": found[:limit], "limit": limit, "truncated": len(found) > limit}}


def parse(query: str, now: float) -> tuple[int, float | None, float | None, dict[str, str]]:
    """(limit, since, until, column filters) of a query string; BadQuery for anything else."""
    try:
        given = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query), max_num_fields=len(PARAMETERS))
    except ValueError as exc:
        raise BadQuery(f"invalid query string: {exc}") from None
    for name, values in given.items():
        if name not in PARAMETERS:
            raise BadQuery(f"unknown parameter {name!r} (known: {', '.join(PARAMETERS)})")
        if len(values) > 1:
            raise BadQuery(f"{name} is given {len(values)} times")
    value = {name: values[0] for name, values in given.items()}
    equal = {name: value[name] for name in ("target", "fetcher") if value.get(name)}
    if value.get("exit"):
        if not _FINGERPRINT.fullmatch(value["exit"]):
            raise BadQuery(f"exit must be a relay fingerprint (40 hex digits), got {value['exit']!r}")
        equal["fingerprint"] = value["exit"].lstrip("$").upper()
    for name, allowed in (("route", tuple(Route)), ("verdict", (*VerdictKind, "none"))):
        if value.get(name):
            if value[name] not in allowed:
                raise BadQuery(f"{name} must be one of {', '.join(allowed)}, got {value[name]!r}")
            equal[name] = value[name]
    limit = DEFAULT_LIMIT
    if value.get("limit"):
        if not value["limit"].isdigit() or not 1 <= int(value["limit"]) <= MAX_LIMIT:
            raise BadQuery(f"limit must be a whole number from 1 to {MAX_LIMIT}, got {value['limit']!r}")
        limit = int(value["limit"])
    since, until = (point_in_time(value[name], name, now) if value.get(name) else None for name in ("since", "until"))
    return limit, since, until, equal


def point_in_time(text: str, name: str, now: float) -> float:
    """Unix seconds, an RFC 3339 time, or a duration ago (``1h``)."""
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return seconds
        raise BadQuery(f"{name} must be a finite time, got {text!r}")
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadQuery(f"{name} must be unix seconds, an RFC 3339 time or a duration like 1h, got {text!r}") from None
    if moment.tzinfo is None:
        raise BadQuery(f"{name} needs a time zone (e.g. Z), got {text!r}")
    return moment.timestamp()
