"""Onionoo's details document: when each exit relay was first seen (its age, as Tor Metrics tells it).

Onionoo (Tor Metrics' relay service, onionoo.torproject.org) answers
``GET /details?search=flag:exit&fields=fingerprint,first_seen`` with JSON::

    {"version": "…", "relays_published": "2025-01-02 03:00:00",
     "relays": [{"fingerprint": "40 hex, upper case", "first_seen": "2015-05-02 23:00:00"}, …]}

Times are UTC; a field is absent when Onionoo does not know it; ``fields=``
limits the document to the named fields.  ``first_seen`` is when the relay's
fingerprint first appeared in a consensus.  The exporter reads the document
through a Tor exit (never directly), as a client of the Tor network would.
"""

from __future__ import annotations

import json
import re
from calendar import timegm
from time import strptime
from urllib.parse import urlencode

QUERY = {"search": "flag:exit", "fields": "fingerprint,first_seen"}
_FINGERPRINT = re.compile(r"[0-9A-F]{40}")
_TIME = "%Y-%m-%d %H:%M:%S"


class OnionooError(ValueError):
    """A document that is not an Onionoo details document (the message says why)."""


def details_url(base: str) -> str:
    """``base`` (Onionoo's /details) with the query for every exit's fingerprint and first-seen time."""
    return f"{base}{'&' if '?' in base else '?'}{urlencode(QUERY)}"


def first_seen(document: str) -> dict[str, float]:
    """Fingerprint → first-seen time (unix seconds) of every relay in the details document that has both;
    entries without them, or with malformed ones, are skipped."""
    try:
        data = json.loads(document)
    except ValueError as exc:
        raise OnionooError(f"not JSON: {exc}") from None
    relays = data.get("relays") if isinstance(data, dict) else None
    if not isinstance(relays, list):
        raise OnionooError("no 'relays' list: not an Onionoo details document")
    found = {}
    for relay in relays:
        if not isinstance(relay, dict):
            continue
        fingerprint, when = relay.get("fingerprint"), relay.get("first_seen")
        if not isinstance(fingerprint, str) or not isinstance(when, str):
            continue
        fingerprint = fingerprint.upper()
        try:
            seen = timegm(strptime(when, _TIME))
        except ValueError:
            continue
        if _FINGERPRINT.fullmatch(fingerprint):
            found[fingerprint] = float(seen)
    return found
