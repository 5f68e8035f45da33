"""The Chromium fetcher through the private Tor network, one lane re-pinned exit by exit.

Real tor relays, the real edge, a real Chromium: the edge's policy makes
``news.test`` answer per exit (exit1 the real page, exit2 a self-clearing
challenge, exit3 an interactive one, exit4 a block page), and the edge's
request log says which exit each request came through.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import stem

from exporter.config import BrowserFetcherConfig, TorConfig
from exporter.detect import classify
from exporter.fetch.chromium import ChromiumFetcher
from exporter.testbed.bed import TestBed
from exporter.testbed.policy import load_policy
from exporter.tor.circuit import CircuitPinner
from exporter.tor.consensus import read_exits
from exporter.tor.control import open_tor

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromedriver") is None, reason="needs Debian's chromium-driver"),
]

CHALLENGE_DELAY = 2.0
POLICY = {
    "sites": {
        "news": {
            "default": "ok",
            "exits": {
                "exit2": {"behaviour": "challenge", "delay": CHALLENGE_DELAY},
                "exit3": "interactive",
                "exit4": "block",
            },
        }
    }
}


class PinnedLane:
    """One lane of our tor, pinned to a chosen test-bed exit before each probe."""

    def __init__(self, bed: TestBed):
        state = bed.state()
        self.tor = open_tor(
            TorConfig(mode="connect", control_port=state["client"]["control_port"],
                      cookie_file=Path(state["client"]["cookie_file"])),
            lanes=1,
        )
        self.lane = self.tor.lanes[0]
        self.consensus = read_exits(self.tor.controller, lambda address: "??")
        # first hops: the middles (the client may hold no microdescriptor of an authority)
        middles = {relay["fingerprint"] for relay in state["relays"] if relay["role"] == "middle"}
        self.first_hops = [relay for relay in self.consensus.relays if relay.fingerprint in middles]
        # open_tor turns microdescriptors off, so circuits wait for full descriptors
        wait_for_descriptors(self.tor.controller, middles | {e["fingerprint"] for e in state["exits"]})
        self.pinner = CircuitPinner(self.tor.controller, [self.lane], set(bed.edge.hostnames()))
        self.pinner.start()

    def pin(self, nickname: str):
        exit_relay = next(e for e in self.consensus.exits if e.nickname == nickname)
        self.pinner.pin(self.lane, exit_relay, self.first_hops)
        return self.lane

    def close(self):
        self.pinner.stop()
        self.tor.close()


def wait_for_descriptors(controller, fingerprints: set[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    missing = set(fingerprints)
    while missing:
        for fingerprint in list(missing):
            try:
                controller.get_info(f"desc/id/{fingerprint}")
                missing.discard(fingerprint)
            except stem.ControllerError:
                pass
        if missing and time.monotonic() > deadline:
            raise TimeoutError(f"tor has no server descriptor for {sorted(missing)}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def bed():
    with TestBed(exits=4, policy=load_policy(POLICY)) as test_bed:
        yield test_bed


@pytest.fixture(scope="module")
def lane(bed):
    pinned = PinnedLane(bed)
    yield pinned
    pinned.close()


@pytest.fixture(scope="module")
def fetcher(bed):
    chromium = ChromiumFetcher(BrowserFetcherConfig(ca_file=bed.edge.ca_file, challenge_wait=6.0), classify)
    yield chromium
    chromium.close()


def news_url(bed, scheme="https"):
    return bed.edge.site_urls(scheme)["news"]


def exits_seen(bed, since: int) -> set[str]:
    return {entry["exit"] for entry in bed.edge.requests()[since:] if entry["site"] == "news"}


def probe(bed, lane, fetcher, nickname, scheme="https"):
    """Pin the lane to ``nickname``, fetch news, and check the edge saw only that exit."""
    before = len(bed.edge.requests())
    result = fetcher.fetch(news_url(bed, scheme), lane.pin(nickname), timeout=30)
    assert exits_seen(bed, before) == {nickname}  # no keep-alive left over from the previous exit
    return result


def test_ok_page_loads_with_timing(bed, lane, fetcher):
    result = probe(bed, lane, fetcher, "exit1")
    assert result.first.status == 200 and classify(result.final).kind == "ok"
    assert result.outcome is None and result.clear_seconds is None
    assert 0 < result.phases["ttfb"] <= result.phases["dom_content_loaded"] <= result.load_seconds < 30
    assert "connect" in result.phases


def test_self_clearing_challenge_is_cleared_after_its_delay(bed, lane, fetcher):
    result = probe(bed, lane, fetcher, "exit2")
    assert result.first.status == 403 and result.first.header("cf-mitigated") == "challenge"
    assert classify(result.first).kind == "challenge"
    assert result.outcome == "cleared"
    assert CHALLENGE_DELAY <= result.clear_seconds < CHALLENGE_DELAY + 3
    assert result.final.status == 200 and classify(result.final).kind == "ok"
    assert "cf_clearance" not in result.first.cookie_names


def test_clearance_cookie_does_not_survive_to_the_next_probe(bed, lane, fetcher):
    """The edge would honour exit2's cf_clearance through exit2 again, so a carried
    cookie would show as a 200 first response; wiped state gets the challenge again."""
    first = probe(bed, lane, fetcher, "exit2")
    assert first.outcome == "cleared"
    between = probe(bed, lane, fetcher, "exit1")
    assert between.first.status == 200
    again = probe(bed, lane, fetcher, "exit2")
    assert again.first.status == 403 and again.outcome == "cleared"


def test_interactive_challenge_is_interactive(bed, lane, fetcher):
    result = probe(bed, lane, fetcher, "exit3")
    assert classify(result.first).kind == "challenge"
    assert result.outcome == "interactive" and result.clear_seconds is None
    assert classify(result.final).kind == "challenge"


def test_block_page_is_blocked(bed, lane, fetcher):
    result = probe(bed, lane, fetcher, "exit4", scheme="http")
    assert result.first.status == 403 and classify(result.first).kind == "block"
    assert result.outcome == "blocked"


def test_one_warm_browser_served_every_probe_and_shows_the_last_page(bed, lane, fetcher):
    probe(bed, lane, fetcher, "exit1")
    assert fetcher.pool.recycled == 0
    assert fetcher.screenshot(lane.lane)[:8] == b"\x89PNG\r\n\x1a\n"
