"""Recorded real pages, replayed by the test bed at their own hosts, probed end to end through tor.

``TestBed(replay=../shared/corpus)`` serves every capture of the labelled
corpus; 20 of them, spread over every verdict, are probed through a 3-hop
circuit with the plain HTTP fetcher and with Chromium, and each probe must be
judged as the capture is labelled.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from exporter.config import ChromiumConfig, HttpFetcherConfig
from exporter.detect import classify
from exporter.fetch.http import HttpFetcher
from exporter.probe import judge
from testbed.bed import TestBed

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(
    not (Path(__file__).resolve().parents[3] / "shared" / "corpus").is_dir(), reason="needs ../shared/corpus")]

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
LABELS = json.loads((CORPUS / "labels.json").read_text()) if CORPUS.is_dir() else {}
NAMES = sorted(name.removesuffix(".har") for name in LABELS)
PROBED = [NAMES[round(i * (len(NAMES) - 1) / 19)] for i in range(20)] if NAMES else []
# Replayed, a JS challenge that sets its cookie and reloads gets itself again, forever: Chromium's page
# load never ends, and the browser fetcher reports a timeout, not the challenge its first document was.
RELOADS_FOREVER = {"043-challenge-sucuri-js-2016-08-18"}


@pytest.fixture(scope="module")
def bed():
    with TestBed(exits=2, replay=CORPUS) as test_bed:
        yield test_bed



@pytest.fixture(scope="module")
def fetchers(bed):
    made = {"http": HttpFetcher(HttpFetcherConfig(ca_file=bed.edge.ca_file, timeout=30))}
    if shutil.which("chromedriver"):
        from exporter.fetch.chromium import ChromiumFetcher

        made["chromium"] = ChromiumFetcher(ChromiumConfig(ca_file=bed.edge.ca_file, challenge_wait=5.0),
                                           classify)
    yield made
    for fetcher in made.values():
        fetcher.close()


def test_every_capture_is_served_at_a_url_of_its_own(bed):
    urls = {site: url for site, url in bed.edge.site_urls("http").items() if site in bed.web.captures}
    assert len(urls) == len(LABELS) and len(set(urls.values())) == len(LABELS)


@pytest.mark.parametrize("kind", ["http", pytest.param("chromium", marks=pytest.mark.browser)])
@pytest.mark.parametrize("name", PROBED)
def test_a_replayed_capture_gets_its_labelled_verdict(bed, lane, fetchers, kind, name):
    if kind not in fetchers:
        pytest.skip("needs Debian's chromium-driver")
    if kind == "chromium" and name in RELOADS_FOREVER:
        pytest.xfail("a page that reloads itself forever times out in the browser fetcher (a fetch/ change)")
    capture = bed.web.captures[name]
    before = len(bed.edge.requests())
    try:
        result = fetchers[kind].fetch(capture.url, lane.pin("exit1"), timeout=40)
    finally:
        lane.release()
    verdict = judge(result, classify)
    label = LABELS[f"{name}.har"]
    assert (verdict.kind, verdict.provider) == (label["verdict"], label["provider"] or ""), verdict.markers
    served = bed.edge.requests()[before:]
    assert served and {entry["exit"] for entry in served} == {"exit1"}
    page = next(entry for entry in served if entry["host"] == capture.host)  # not the last page's late requests
    assert (page["path"], page["status"]) == (capture.start, capture.status)


@pytest.mark.browser
def test_a_page_that_refreshes_itself_at_once_is_read_every_time(bed, lane, fetchers):
    """Cloudflare's 5xx pages carry ``<meta http-equiv="refresh" content="0">``: the tab reloads them
    as fast as the test bed answers (tens of times a second), and every read races a navigation."""
    if "chromium" not in fetchers:
        pytest.skip("needs Debian's chromium-driver")
    name = "059-error-cloudflare-cf-502-bad-gateway"
    capture = bed.web.captures[name]
    assert '<meta http-equiv="refresh" content="0">' in capture.body
    label = LABELS[f"{name}.har"]
    expected = (capture.status, label["verdict"], label["provider"])
    verdicts, misread = [], []
    for _ in range(6):
        try:
            result = fetchers["chromium"].fetch(capture.url, lane.pin("exit1"), timeout=40)
        finally:
            lane.release()
        verdict = judge(result, classify)
        verdicts.append((result.first.status, verdict.kind, verdict.provider))
        if verdicts[-1] != expected:  # which page was read, so a failure says what the tab showed
            misread.append((result.first.url, len(result.first.body), result.first.body[:400]))
    assert verdicts == [expected] * 6, misread
