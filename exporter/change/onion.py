"""Does a response point Tor users at an onion service?

Two announcements exist:

- ``Alt-Svc`` (RFC 7838): ``h2="<name>.onion:443"; ma=86400`` names an
  alternative service; Tor Browser follows one that is an onion service
  without telling the user (Cloudflare's "onion routing" works this way).
- ``Onion-Location``: an ``http(s)://<name>.onion/...`` URL Tor Browser
  offers in its address bar.

An exporter whose target says ``onion: auto`` probes the URL of the last
``Onion-Location`` it saw (``onion_location``).  An Alt-Svc alternative is
the same origin at another endpoint (the browser keeps the original host
name for TLS and Host), so it has no URL of its own to probe: such a target
names its onion URL in the config.

Only version 3 onion addresses count (rend-spec-v3 §6): 56 base32
characters encoding ``PUBKEY (32 bytes) | CHECKSUM (2) | VERSION (1, = 3)``
with ``CHECKSUM = SHA3-256(".onion checksum" | PUBKEY | VERSION)[:2]``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from urllib.parse import urlsplit

from exporter.values import Response

KINDS = ("alt_svc", "onion_location")
V3_LABEL = re.compile(r"[a-z2-7]{56}")
# One Alt-Svc alternative: protocol-id "=" quoted alt-authority, then parameters.
ALT_SVC_ENTRY = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*"([^"]*)"')


def onion_facts(response: Response) -> set[str]:
    """The kinds of onion announcement ``response`` carries (a subset of KINDS)."""
    facts = set()
    if any(_is_v3_onion(host) for value in response.header_values("alt-svc") for host in alt_svc_hosts(value)):
        facts.add("alt_svc")
    if any(is_onion_url(value) for value in response.header_values("onion-location")):
        facts.add("onion_location")
    return facts


def onion_location(response: Response) -> str | None:
    """The onion URL the response's ``Onion-Location`` names, if it names a valid one."""
    return next((value.strip() for value in response.header_values("onion-location") if is_onion_url(value)),
                None)


def is_onion_url(value: str) -> bool:
    """An ``http(s)://`` URL whose host is a valid v3 onion address."""
    try:
        url = urlsplit(value.strip())
        return url.scheme in ("http", "https") and _is_v3_onion(url.hostname)
    except ValueError:  # a malformed URL, e.g. a bad IPv6 literal
        return False


def alt_svc_hosts(value: str) -> list[str]:
    """The host of each alternative in an Alt-Svc field value (``clear`` has none)."""
    hosts = []
    for entry in value.split(","):
        match = ALT_SVC_ENTRY.match(entry)
        if match:
            hosts.append(match.group(2).rpartition(":")[0])
    return hosts


def _is_v3_onion(host: str | None) -> bool:
    """``[subdomain.]<56 base32 chars>.onion`` whose checksum and version byte are right."""
    if not host:
        return False
    labels = host.lower().rstrip(".").split(".")
    if len(labels) < 2 or labels[-1] != "onion" or not V3_LABEL.fullmatch(labels[-2]):
        return False
    return is_v3_address(labels[-2])


def is_v3_address(label: str) -> bool:
    """The 56-character part of a v3 onion address decodes to a valid key, checksum and version."""
    try:
        raw = base64.b32decode(label.upper())
    except binascii.Error:
        return False
    pubkey, checksum, version = raw[:32], raw[32:34], raw[34:]
    if version != b"\x03":
        return False
    return hashlib.sha3_256(b".onion checksum" + pubkey + version).digest()[:2] == checksum
