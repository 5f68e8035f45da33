"""/api/v1/probes: the query, its bounds, and its answer from the real store."""

import pytest
from support.spine_values import fetched, page, relay

from exporter.api import MAX_LIMIT, answer, parse
from exporter.probe import ProbeResult
from exporter.store import Store
from exporter.values import Route, Verdict

NOW = 2_000_000_000.0


def test_defaults_and_every_filter():
    assert parse("", NOW) == (100, None, None, {})
    limit, since, until, equal = parse(f"target=forum&exit=${'ab' * 20}&fetcher=chromium&route=direct&verdict=none"
                                       f"&since=1h&until=2033-05-18T03:33:20Z&limit={MAX_LIMIT}", NOW)
    assert (limit, since, until) == (MAX_LIMIT, NOW - 3600, NOW)
    assert equal == {"target": "forum", "fetcher": "chromium", "fingerprint": "AB" * 20, "route": "direct",
                     "verdict": "none"}
    assert parse("since=1999999000.5", NOW)[1] == 1999999000.5


@pytest.mark.parametrize("query, message", [
    ("tagret=forum", "unknown parameter 'tagret'"),
    ("target=a&target=b", "target is given 2 times"),
    ("exit=exit1", "exit must be a relay fingerprint"),
    ("route=exit", "route must be one of tor, direct, onion"),
    ("limit=0", "limit must be a whole number from 1 to 1000"),
    (f"limit={MAX_LIMIT + 1}", "from 1 to 1000"),
    ("since=yesterday", "since must be unix seconds, an RFC 3339 time or a duration"),
    ("since=2025-01-01T00:00:00", "needs a time zone"),
    ("until=inf", "until must be a finite time"),
    ("target", "invalid query string"),
    ("&".join(f"x{n}=1" for n in range(20)), "invalid query string"),
])
def test_a_bad_query_is_a_400_naming_the_parameter(query, message):
    status, document = answer(None, query, NOW)
    assert status == 400 and document["status"] == "error" and message in document["error"]


def test_the_answer_lists_the_newest_matching_probes_and_says_if_more_matched(tmp_path):
    import time

    store = Store(tmp_path / "state.db")
    now = time.time()
    try:
        for n in range(5):
            kind = "challenge" if n % 2 == 0 else "ok"
            store.record(ProbeResult(f"p{n}", "forum", "http", relay(n % 2 + 1), now - 600 + n, 0.1,
                                     verdict=Verdict(kind, "cloudflare" if kind == "challenge" else ""),
                                     fetch=fetched(page(403 if kind == "challenge" else 200))))
        store.record(ProbeResult("d", "forum", "http", None, now - 10, 0.1, verdict=Verdict("challenge", "cloudflare"),
                                 fetch=fetched(page(403)), route=Route.DIRECT))
        store.flush()
        status, document = answer(store, "target=forum&verdict=challenge&route=tor&since=1h&limit=2", now)
        assert status == 200
        data = document["data"]
        assert [p["probe_id"] for p in data["probes"]] == ["p4", "p2"] and data["truncated"] is True
        assert {p["exit"]["fingerprint"] for p in data["probes"]} == {relay(1).fingerprint}
        status, document = answer(store, "target=forum&verdict=challenge&since=5m", now)
        assert [p["probe_id"] for p in document["data"]["probes"]] == ["d"] and not document["data"]["truncated"]
    finally:
        store.close()
