"""The test bed's Onionoo answers what the exporter's reader reads, and logs which exit asked."""

import time

import requests

from exporter.tor.onionoo import details_url, first_seen
from testbed.onionoo import AGES, OnionooServer, details, relays_with_ages

EXITS = [{"fingerprint": f"{n:040X}", "nickname": f"exit{n}", "address": f"127.0.0.{20 + n}", "country": "DE",
          "asn": 64496, "as_name": "Testbed Hosting"} for n in range(1, 6)]


def test_every_age_bucket_has_an_exit_and_fields_limit_the_document():
    now = 2_000_000_000.0
    relays = relays_with_ages(EXITS, now)
    assert [now - r.first_seen for r in relays] == [*AGES, AGES[0]]
    full = details(relays)
    assert full["relays"][0]["as"] == "AS64496" and full["relays"][0]["country"] == "de"
    assert set(details(relays, {"fingerprint", "first_seen"})["relays"][0]) == {"fingerprint", "first_seen"}


def test_the_server_answers_the_exporters_query_and_logs_the_exit():
    now = time.time()
    server = OnionooServer(relays_with_ages(EXITS, now), identify=lambda peer: "exit2", host="127.0.0.1")
    server.start()
    try:
        url = details_url(f"http://127.0.0.1:{server.port}/details")
        answer = requests.get(url, timeout=10)
        assert answer.status_code == 200
        times = first_seen(answer.text)
        assert times[EXITS[0]["fingerprint"]] == int(now - AGES[0])  # whole seconds, as Onionoo writes them
        assert server.requests[-1]["exit"] == "exit2" and server.requests[-1]["path"].startswith("/details?")
        assert requests.get(f"http://127.0.0.1:{server.port}/summary", timeout=10).status_code == 404
        assert server.url() == f"http://onionoo.test:{server.port}/details"
    finally:
        server.stop()
