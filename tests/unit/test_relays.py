"""Relay facts: first-seen times from Onionoo through an exit, else from the consensus history; both persist."""

import json
import time

from support.spine_values import page, relay

from exporter.relays import RelayFacts
from exporter.store import Store
from exporter.values import FetchError, Response


def onionoo_document(times: dict[str, str]) -> Response:
    body = json.dumps({"relays": [{"fingerprint": fp, "first_seen": when} for fp, when in times.items()]})
    return Response("http://onionoo.test/details", 200, (), body)


def test_the_earliest_time_wins_and_survives_a_restart(tmp_path):
    store = Store(tmp_path / "state.db")
    facts = RelayFacts(store)
    one, two = relay(1).fingerprint, relay(2).fingerprint
    facts.saw([one, two], valid_after=2_000_000_000.0)
    facts.saw([one], valid_after=2_000_003_600.0)  # a later consensus changes nothing
    assert facts.first_seen() == {one: 2_000_000_000.0, two: 2_000_000_000.0}
    assert facts.read_onionoo("http://onionoo.test/details", [relay(1)],
                              lambda exit, url: onionoo_document({one: "2015-05-02 23:00:00"}))
    assert facts.first_seen()[one] == 1430607600.0 and facts.onionoo_success_time > time.time() - 5
    store.close()

    again = Store(tmp_path / "state.db")
    try:
        assert RelayFacts(again).first_seen() == {one: 1430607600.0, two: 2_000_000_000.0}
        assert again.load_relays()[one] == (1430607600.0, "onionoo")
    finally:
        again.close()


def test_onionoo_is_read_through_the_heaviest_exits_until_one_answers(tmp_path):
    store = Store(tmp_path / "state.db")
    facts = RelayFacts(store)
    asked = []

    def fetch(exit, url):
        asked.append((exit.nickname, url))
        if exit.nickname == "exit3":
            raise FetchError("circuit", "no circuit")
        if exit.nickname == "exit2":
            return page(503, "<title>Busy</title>")
        return onionoo_document({relay(9).fingerprint: "2020-01-01 00:00:00"})

    exits = [relay(1, 0.1), relay(2, 0.3), relay(3, 0.6)]
    assert facts.read_onionoo("http://onionoo.test/details", exits, fetch)
    assert [nickname for nickname, _ in asked] == ["exit3", "exit2", "exit1"]
    assert asked[0][1] == "http://onionoo.test/details?search=flag%3Aexit&fields=fingerprint%2Cfirst_seen"
    assert relay(9).fingerprint in facts.first_seen()
    assert not facts.read_onionoo("http://onionoo.test/details", [], fetch), "no exit allows its port"
    store.close()
