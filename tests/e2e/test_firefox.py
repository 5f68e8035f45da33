"""The Firefox fetcher through the private Tor network, one lane re-pinned exit by exit.

Real tor relays, the real edge, a real Firefox ESR driven by geckodriver (the
test bed, policy and pinned lane are the Chromium test's): exit1 gets the real
page, exit2 a self-clearing challenge, exit3 an interactive one, exit4 a block
page, and the edge's request log says which exit each request came through.
Runs when geckodriver is on PATH (Debian ships none; the Docker image has it).
"""

from __future__ import annotations

import shutil
import time

import pytest
from test_chromium_testbed import CHALLENGE_DELAY, bed, exits_seen, lane, news_url  # noqa: F401 (fixtures)

from exporter.config import BrowserFetcherConfig
from exporter.detect import classify
from exporter.fetch import browser_pool
from exporter.fetch.firefox import FirefoxFetcher

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("geckodriver") is None, reason="needs geckodriver on PATH (Debian ships none)"),
    pytest.mark.skipif(shutil.which("firefox-esr") is None, reason="needs Debian's firefox-esr"),
]


@pytest.fixture(scope="module")
def fetcher(bed):  # noqa: F811
    firefox = FirefoxFetcher(BrowserFetcherConfig(ca_file=bed.edge.ca_file, challenge_wait=6.0), classify)
    yield firefox
    firefox.close()


def probe(bed, lane, fetcher, nickname, scheme="https"):  # noqa: F811
    """Pin the lane to ``nickname``, fetch news, and check the edge saw only that exit."""
    before = len(bed.edge.requests())
    result = fetcher.fetch(news_url(bed, scheme), lane.pin(nickname), timeout=60)
    assert exits_seen(bed, before) == {nickname}  # no keep-alive left over from the previous exit
    return result


def test_ok_page_over_https_loads_with_timing(bed, lane, fetcher):  # noqa: F811
    result = probe(bed, lane, fetcher, "exit1")
    assert result.first.status == 200 and classify(result.final).kind == "ok"
    assert result.outcome is None
    assert 0 < result.load_seconds < 60


def test_plain_http_target_is_not_upgraded(bed, lane, fetcher):  # noqa: F811
    result = probe(bed, lane, fetcher, "exit1", scheme="http")
    assert result.first.url.startswith("http://") and result.first.status == 200


def test_self_clearing_challenge_is_cleared_and_its_clearance_is_wiped(bed, lane, fetcher):  # noqa: F811
    first = probe(bed, lane, fetcher, "exit2")
    assert first.first.status == 403 and first.first.header("cf-mitigated") == "challenge"
    assert first.outcome == "cleared" and CHALLENGE_DELAY <= first.clear_seconds < CHALLENGE_DELAY + 5
    assert first.final.status == 200 and classify(first.final).kind == "ok"
    assert probe(bed, lane, fetcher, "exit1").first.status == 200
    again = probe(bed, lane, fetcher, "exit2")
    assert again.first.status == 403 and again.outcome == "cleared"


def test_interactive_challenge_and_block_page(bed, lane, fetcher):  # noqa: F811
    assert probe(bed, lane, fetcher, "exit3").outcome == "interactive"
    blocked = probe(bed, lane, fetcher, "exit4", scheme="http")
    assert blocked.first.status == 403 and blocked.outcome == "blocked"


def test_one_warm_browser_served_every_probe_and_dies_whole(bed, lane, fetcher):  # noqa: F811
    probe(bed, lane, fetcher, "exit1")
    assert fetcher.pool.recycled == 0
    assert fetcher.screenshot(lane.lane)[:8] == b"\x89PNG\r\n\x1a\n"
    browser = fetcher.pool.peek(lane.lane)
    session = browser.driver.service.process.pid
    assert len(browser_pool.live_processes(session, str(browser.home))) >= 2  # geckodriver and the browser
    fetcher.pool.discard(lane.lane)
    deadline = time.monotonic() + 10
    while browser_pool.live_processes(session, str(browser.home)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert browser_pool.live_processes(session, str(browser.home)) == []
    assert probe(bed, lane, fetcher, "exit1").first.status == 200
