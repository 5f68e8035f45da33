"""The Chromium fetcher through the private Tor network, one lane re-pinned exit by exit.

Real tor relays, the real edge, a real Chromium: the edge's policy makes
``news.test`` answer per exit (exit1 the real page, exit2 a self-clearing
challenge, exit3 an interactive one, exit4 a block page), ``forum.test`` is
slow through exit1, and the edge's request log says which exit each request
came through.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import statistics
import tempfile
import threading
import time

import pytest

from exporter.config import ChromiumConfig
from exporter.detect import classify
from exporter.fetch import browser_pool
from exporter.fetch.chromium import ChromiumFetcher
from exporter.values import FetchError
from testbed.bed import TestBed
from testbed.policy import load_policy

log = logging.getLogger(__name__)

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
        },
        "forum": {"default": "ok", "exits": {"exit1": {"behaviour": "slow", "seconds": 5}}},
    }
}


@pytest.fixture(scope="module")
def bed():
    with TestBed(exits=4, policy=load_policy(POLICY)) as test_bed:
        yield test_bed



@pytest.fixture(scope="module")
def fetcher(bed):
    chromium = ChromiumFetcher(ChromiumConfig(ca_file=bed.edge.ca_file, challenge_wait=6.0), classify)
    yield chromium
    chromium.close()


def news_url(bed, scheme="https", site="news"):
    return bed.edge.site_urls(scheme)[site]


def exits_seen(bed, since: int) -> set[str]:
    return {entry["exit"] for entry in bed.edge.requests()[since:] if entry["site"] == "news"}


def fetch_pinned(lane, fetcher, nickname, url):
    """Pin the lane to ``nickname`` and fetch ``url``.

    A probe whose circuit tor closed under it (a relay of the bed sent DESTROY, as
    relays of the real network do now and then) fails as ``circuit``; the pinner
    says so, and that probe is made once more: these tests are about the browser."""
    try:
        return fetcher.fetch(url, lane.pin(nickname), timeout=30)
    except FetchError as exc:
        lost = lane.lost()
        if exc.reason != "circuit" or lost is None:
            raise
        log.warning("probing %s again: %s", nickname, lost)
    return fetcher.fetch(url, lane.pin(nickname), timeout=30)


def probe(bed, lane, fetcher, nickname, scheme="https"):
    """Pin the lane to ``nickname``, fetch news, and check the edge saw only that exit."""
    before = len(bed.edge.requests())
    result = fetch_pinned(lane, fetcher, nickname, news_url(bed, scheme))
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


def test_the_wipe_freezes_the_last_page_so_a_pending_challenge_cannot_clear_later(bed, lane):
    """A challenge still counting down when its probe gave up would earn cf_clearance a moment
    later, after the next probe's wipe, unless the wipe stops the page's scripts first."""
    impatient = ChromiumFetcher(ChromiumConfig(ca_file=bed.edge.ca_file, challenge_wait=0.0), classify)
    try:
        assert probe(bed, lane, impatient, "exit2").outcome == "interactive"  # gave up at once
        browser = impatient.pool.peek(lane.lane)
        browser.wipe()
        time.sleep(CHALLENGE_DELAY + 2)  # the page's script would have cleared by now
        assert browser.driver.execute_cdp_cmd("Network.getAllCookies", {})["cookies"] == []
    finally:
        impatient.close()


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


def tree_of(browser) -> list[int]:
    return browser_pool.live_processes(browser.session_id, str(browser.home))


def wait_until_gone(browser, seconds: float = 10.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while tree_of(browser) and time.monotonic() < deadline:
        time.sleep(0.1)
    return tree_of(browser)


def test_browser_killed_mid_probe_fails_that_probe_only(bed, lane, fetcher):
    probe(bed, lane, fetcher, "exit1")
    browser = fetcher.pool.peek(lane.lane)
    killer = threading.Timer(1.5, lambda: os.kill(browser.main_pid(), signal.SIGKILL))
    killer.start()
    with pytest.raises(FetchError) as failed:
        fetcher.fetch(news_url(bed, "http", site="forum"), lane.pin("exit1"), timeout=30)  # 5 s slow page
    killer.join()
    assert failed.value.reason == "browser"
    assert wait_until_gone(browser) == []  # chromedriver and every chromium helper
    after = probe(bed, lane, fetcher, "exit1")
    assert after.first.status == 200 and fetcher.pool.peek(lane.lane) is not browser


def test_frozen_browser_is_killed_and_replaced(bed, lane, fetcher):
    probe(bed, lane, fetcher, "exit1")
    browser = fetcher.pool.peek(lane.lane)
    os.kill(browser.main_pid(), signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(FetchError) as failed:
        fetcher.fetch(news_url(bed), lane.pin("exit1"), timeout=5)
    assert failed.value.reason in ("timeout", "browser")
    assert time.monotonic() - started < 5 + 6.0 + 15 + 5  # timeout + challenge wait + watchdog grace + slack
    assert wait_until_gone(browser) == []
    assert probe(bed, lane, fetcher, "exit1").first.status == 200


def chromium_temporaries() -> set[str]:
    """What Chromiums made in the temporary directory: a killed one leaves them there."""
    return {name for name in os.listdir(tempfile.gettempdir()) if name.startswith("org.chromium.")}


def test_200_probes_leave_one_browser_tree_and_steady_memory(bed, lane):
    """Warm pool stability: recycling every 50 probes, never more than one live
    browser tree, and each generation's memory at its end within 1.5× of the others;
    no browser leaves a file behind."""
    temporaries = chromium_temporaries()
    recycle_after, rounds = 50, 200
    stable = ChromiumFetcher(
        ChromiumConfig(ca_file=bed.edge.ca_file, challenge_wait=6.0, recycle_after=recycle_after), classify)
    plan = [("exit1", "news"), ("exit4", "news"), ("exit2", "shop"), ("exit3", "static"), ("exit1", "login")]
    generations: dict[str, list[int]] = {}  # browser home → PSS after each of its probes
    browsers = {}
    started = time.monotonic()
    try:
        for n in range(rounds):
            nickname, site = plan[n % len(plan)]
            result = fetch_pinned(lane, stable, nickname, news_url(bed, ("http", "https")[n % 2], site))
            assert result.final.status in (200, 403)
            browser = stable.pool.peek(lane.lane)
            browsers[str(browser.home)] = browser
            generations.setdefault(str(browser.home), []).append(browser.resident_bytes())
            retired = [b for home, b in browsers.items() if b is not browser]
            assert all(wait_until_gone(b) == [] for b in retired)
        elapsed = time.monotonic() - started
        probes = sum(b.probes for b in browsers.values())  # a failed probe counts towards recycling too
        assert len(generations) == math.ceil(probes / recycle_after) and stable.pool.recycled == len(generations) - 1
        ends = [samples[-1] for samples in generations.values()]
        assert max(ends) <= 1.5 * min(ends)
        print(f"\n{rounds} probes in {elapsed:.1f} s ({60 * rounds / elapsed:.0f}/min); "
              f"PSS per generation (MiB) first/median/last: "
              + "; ".join(f"{s[0] / 2**20:.0f}/{statistics.median(s) / 2**20:.0f}/{s[-1] / 2**20:.0f}"
                          for s in generations.values())
              + f"; live processes of the current tree: {len(tree_of(browser))}")
    finally:
        stable.close()
    assert all(wait_until_gone(b) == [] for b in browsers.values())
    assert [home for home in generations if os.path.exists(home)] == []
    assert chromium_temporaries() - temporaries == set()
