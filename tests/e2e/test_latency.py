"""The test bed with --latency: every hop pays the delay each way, and probes still work, only slower.

With 150 ms on each hop (client → guard → middle → exit → edge, each way),
the first request of a page through a 3-hop circuit pays at least 4 × 2 ×
150 ms once its stream is open, and opening the stream another 3 × 2; the
issue asks for at least 6 × 150 ms per page load.
"""

from __future__ import annotations

import shutil
import time

import pytest
from support.pinned_lane import PinnedLane

from exporter.config import BrowserFetcherConfig, HttpFetcherConfig
from exporter.detect import classify
from exporter.fetch.http import HttpFetcher
from testbed.bed import TestBed
from testbed.policy import load_policy

pytestmark = pytest.mark.e2e

LATENCY = 0.15
POLICY = {"sites": {"news": {"default": "ok", "exits": {"exit2": {"behaviour": "challenge", "delay": 1.0}}}}}


@pytest.fixture(scope="module")
def bed():
    with TestBed(exits=2, policy=load_policy(POLICY), latency=LATENCY) as test_bed:
        yield test_bed


@pytest.fixture(scope="module")
def lanes(bed):
    state = bed.state()
    assert state["latency_seconds"] == LATENCY
    pinned = {hops: PinnedLane(state, hops=hops) for hops in (2, 3)}
    yield pinned
    for lane in pinned.values():
        lane.close()


def timed(bed, lane, fetcher, nickname, scheme="https"):
    before = len(bed.edge.requests())
    try:
        result = fetcher.fetch(bed.edge.site_urls(scheme)["news"], lane.pin(nickname), timeout=60)
    finally:
        lane.release()
    time.sleep(2 * 4 * LATENCY)  # requests the page sent (a favicon) may still be on their way to the edge
    assert {entry["exit"] for entry in bed.edge.requests()[before:]} == {nickname}  # still told apart
    return result


def test_an_http_page_through_three_delayed_hops_takes_at_least_six_delays(bed, lanes):
    fetcher = HttpFetcher(HttpFetcherConfig(ca_file=bed.edge.ca_file, timeout=60))
    three = [timed(bed, lanes[3], fetcher, "exit1").load_seconds for _ in range(3)]
    two = [timed(bed, lanes[2], fetcher, "exit1").load_seconds for _ in range(3)]
    print(f"\nhttp page load with {LATENCY * 1000:.0f} ms per hop each way: 3 hops {sorted(three)}, "
          f"2 hops {sorted(two)} s")
    assert min(three) >= 6 * LATENCY
    assert min(three) > min(two)  # one more hop, two more delays


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromedriver") is None, reason="needs Debian's chromium-driver")
def test_chromium_pages_and_challenges_work_slower(bed, lanes):
    from exporter.fetch.chromium import ChromiumFetcher

    fetcher = ChromiumFetcher(BrowserFetcherConfig(ca_file=bed.edge.ca_file, challenge_wait=20.0), classify)
    try:
        page = timed(bed, lanes[3], fetcher, "exit1")
        assert page.first.status == 200 and page.load_seconds >= 6 * LATENCY
        challenge = timed(bed, lanes[3], fetcher, "exit2")
        assert classify(challenge.first).kind == "challenge" and challenge.outcome == "cleared"
        print(f"\nChromium with {LATENCY * 1000:.0f} ms per hop: page {page.load_seconds:.2f} s, "
              f"challenge cleared in {challenge.clear_seconds:.2f} s (its own delay 1 s)")
    finally:
        fetcher.close()
