"""Onionoo's details document → each relay's first-seen time; malformed parts are skipped, not fatal."""

import json

import pytest

from exporter.tor.onionoo import OnionooError, details_url, first_seen


def test_the_query_asks_for_exits_and_two_fields():
    assert details_url("https://onionoo.torproject.org/details") == (
        "https://onionoo.torproject.org/details?search=flag%3Aexit&fields=fingerprint%2Cfirst_seen")
    assert details_url("http://o.test/details?limit=5").startswith("http://o.test/details?limit=5&search=")


def test_first_seen_times_are_utc_unix_seconds_by_upper_case_fingerprint():
    document = json.dumps({"version": "8.0", "relays_published": "2025-01-02 03:00:00", "relays": [
        {"fingerprint": "a" * 40, "first_seen": "2015-05-02 23:00:00", "as": "AS24940"},
        {"fingerprint": "B" * 40, "first_seen": "1970-01-01 00:01:00"},
        {"fingerprint": "C" * 40},  # no first_seen: Onionoo does not know it
        {"fingerprint": "D" * 40, "first_seen": "yesterday"},
        {"fingerprint": "not hex", "first_seen": "2015-05-02 23:00:00"},
        "junk",
    ]})
    assert first_seen(document) == {"A" * 40: 1430607600.0, "B" * 40: 60.0}


@pytest.mark.parametrize("document", ["<html>Service unavailable</html>", "[]", '{"relays": 3}', "{}"])
def test_what_is_no_details_document_says_so(document):
    with pytest.raises(OnionooError):
        first_seen(document)
