"""Onion-service announcements: Alt-Svc and Onion-Location with a valid v3 address."""

from __future__ import annotations

import base64
import hashlib

import pytest

from exporter.change.onion import alt_svc_hosts, is_v3_address, onion_facts
from exporter.values import Response


def v3_address(seed: bytes, version: bytes = b"\x03", good_checksum: bool = True) -> str:
    pubkey = hashlib.sha256(seed).digest()
    checksum = hashlib.sha3_256(b".onion checksum" + pubkey + version).digest()[:2]
    if not good_checksum:
        checksum = bytes(b ^ 0xFF for b in checksum)
    return base64.b32encode(pubkey + checksum + version).decode().lower()


GOOD = v3_address(b"site")


def facts(*headers):
    return onion_facts(Response("https://site.example/", 200, tuple(headers)))


def test_v3_address_checks():
    assert is_v3_address(GOOD)
    assert not is_v3_address(v3_address(b"site", good_checksum=False))
    assert not is_v3_address(v3_address(b"site", version=b"\x02"))
    assert not is_v3_address("!" * 56)


@pytest.mark.parametrize("value", [
    f'h2="{GOOD}.onion:443"; ma=86400',
    f'h3=":443"; ma=86400, h2="{GOOD}.onion:443"; ma=86400; persist=1',
    f'h2="www.{GOOD}.ONION:443"',
])
def test_alt_svc_naming_an_onion_service(value):
    assert facts(("Alt-Svc", value)) == {"alt_svc"}


@pytest.mark.parametrize("value", [
    'h3=":443"; ma=86400',
    "clear",
    f'h2="{GOOD[:-1]}a.onion:443"',  # checksum no longer matches
    f'h2="{GOOD[:40]}.onion:443"',  # a v2-length name
    f'h2="{GOOD}.onion.example:443"',
])
def test_alt_svc_without_a_v3_onion(value):
    assert facts(("Alt-Svc", value)) == set()


def test_onion_location():
    assert facts(("Onion-Location", f"http://{GOOD}.onion/path?q=1")) == {"onion_location"}
    assert facts(("onion-location", f" https://{GOOD}.onion ")) == {"onion_location"}
    assert facts(("Onion-Location", f"ftp://{GOOD}.onion/")) == set()
    assert facts(("Onion-Location", "http://[::1/")) == set()
    assert facts(("Onion-Location", "http://example.onion/")) == set()


def test_both_and_neither():
    both = facts(("Alt-Svc", f'h2="{GOOD}.onion:443"'), ("Onion-Location", f"http://{GOOD}.onion/"))
    assert both == {"alt_svc", "onion_location"}
    assert facts(("Server", "nginx")) == set()


def test_alt_svc_hosts():
    assert alt_svc_hosts('h2="alt.example:443", h3=":8443"; ma=60') == ["alt.example", ""]
