"""A probe sees the whole page, as a Tor user does: vendor hosts, redirects across hosts, HTTP/2, one exit.

Real tor (3-hop circuits), the real edge, real browsers.  The edge's request
log says, for every request, which exit it came through, to which host and
over which protocol, so each test checks that every request of its probe, to
the site and to the vendor hosts, came through the pinned exit and no other.

Firefox runs where geckodriver is on PATH (Debian ships none); Chromium where
Debian's chromium-driver is installed.
"""

from __future__ import annotations

import shutil

import pytest

from exporter.config import BrowserFetcherConfig, HttpFetcherConfig
from exporter.detect import classify
from exporter.fetch.http import HttpFetcher
from exporter.probe import judge
from testbed.bed import TestBed
from testbed.policy import load_policy

pytestmark = pytest.mark.e2e

CHALLENGE_DELAY = 2.0
POLICY = {"sites": {
    "news": {"default": "ok", "exits": {"exit2": {"behaviour": "challenge", "delay": CHALLENGE_DELAY}}},
    "login": {"default": "widget"},
    "portal": {"default": "ok", "exits": {"exit2": "interactive", "exit3": {"behaviour": "challenge",
                                                                             "delay": CHALLENGE_DELAY}}},
}}
VENDOR_HOSTS = {"challenges.cloudflare.test", "js.hcaptcha.test"}


def _browser(kind: str):
    needs = {"chromium": "chromedriver", "firefox": "geckodriver"}[kind]
    return pytest.param(kind, marks=[pytest.mark.browser, pytest.mark.skipif(
        shutil.which(needs) is None, reason=f"needs {needs} on PATH")])


BROWSERS = [_browser("chromium"), _browser("firefox")]
EVERY_FETCHER = ["http", *BROWSERS]


@pytest.fixture(scope="module")
def bed():
    with TestBed(exits=3, policy=load_policy(POLICY)) as test_bed:
        yield test_bed



@pytest.fixture(scope="module")
def fetchers(bed):
    made = {}

    def get(kind: str):
        if kind not in made:
            if kind == "http":
                made[kind] = HttpFetcher(HttpFetcherConfig(ca_file=bed.edge.ca_file, timeout=30))
            else:
                config = BrowserFetcherConfig(ca_file=bed.edge.ca_file, challenge_wait=CHALLENGE_DELAY + 8)
                if kind == "chromium":
                    from exporter.fetch.chromium import ChromiumFetcher
                    made[kind] = ChromiumFetcher(config, classify)
                else:
                    from exporter.fetch.firefox import FirefoxFetcher
                    made[kind] = FirefoxFetcher(config, classify)
        return made[kind]

    yield get
    for fetcher in made.values():
        fetcher.close()


def probe(bed, lane, fetcher, nickname: str, url: str):
    """One probe as the Prober runs it (pin, fetch, release); returns the result and the edge's log of it."""
    before = len(bed.edge.requests())
    try:
        result = fetcher.fetch(url, lane.pin(nickname), timeout=45)
    finally:
        lane.release()
    return result, bed.edge.requests()[before:]


def url_of(bed, site: str, scheme: str = "https", path: str = "") -> str:
    return bed.edge.site_urls(scheme)[site].rstrip("/") + path if path else bed.edge.site_urls(scheme)[site]


@pytest.mark.parametrize("kind", BROWSERS)
def test_a_managed_challenge_whose_solver_comes_from_the_vendor_clears_through_the_pinned_exit(bed, lane, fetchers,
                                                                                               kind):
    result, served = probe(bed, lane, fetchers(kind), "exit2", url_of(bed, "news"))
    assert classify(result.first).kind == "challenge" and result.outcome == "cleared"
    assert result.clear_seconds >= CHALLENGE_DELAY and classify(result.final).kind == "ok"
    hosts = {entry["host"] for entry in served}
    assert {"news.test", "challenges.cloudflare.test"} <= hosts
    assert {entry["exit"] for entry in served} == {"exit2"}, served  # none directly, none through another exit
    steps = [(entry["host"], entry["path"].split("?")[0].rsplit("/", 2)[-2] if "/flow/" in entry["path"]
              or "/rc/" in entry["path"] else entry["path"].split("?")[0], entry["status"]) for entry in served]
    assert ("challenges.cloudflare.test", "ov1", 200) in steps  # the frame earned its token at the vendor
    assert ("news.test", "rc", 200) in steps  # and the page redeemed it at the site
    assert lane.closed == []


def test_chromium_speaks_http2_to_the_edge(bed, lane, fetchers):
    if shutil.which("chromedriver") is None:
        pytest.skip("needs chromedriver on PATH")
    result, served = probe(bed, lane, fetchers("chromium"), "exit1", url_of(bed, "news"))
    assert result.first.status == 200
    assert {entry["protocol"] for entry in served} == {"HTTP/2"}, served
    print(f"\nChromium → https://news.test: {[(e['host'], e['path'], e['protocol']) for e in served]}")


@pytest.mark.parametrize("kind", EVERY_FETCHER)
def test_a_widget_page_is_judged_widget_with_the_vendor_as_provider(bed, lane, fetchers, kind):
    result, served = probe(bed, lane, fetchers(kind), "exit1", url_of(bed, "login"))
    verdict = judge(result, classify)
    assert (verdict.kind, verdict.provider) == ("widget", "hcaptcha"), verdict
    assert {entry["exit"] for entry in served} == {"exit1"}
    if kind != "http":  # a browser loads the widget from the widget host, through the same exit
        assert {entry["path"] for entry in served if entry["host"] == "js.hcaptcha.test"} >= {
            "/1/api.js", "/captcha/v1/static/hcaptcha.html"}


@pytest.mark.parametrize("kind", EVERY_FETCHER)
def test_an_apex_that_redirects_to_www_is_probed_on_the_final_page(bed, lane, fetchers, kind):
    result, served = probe(bed, lane, fetchers(kind), "exit1", url_of(bed, "portal", "http"))
    assert judge(result, classify).kind == "ok"
    assert result.first.url.startswith("http://www.portal.test:") and result.first.status == 200
    assert len(result.redirects) == 1
    assert [(e["host"], e["status"]) for e in served if e["path"] == "/"][:2] == [
        ("portal.test", 301), ("www.portal.test", 200)]
    assert {entry["exit"] for entry in served} == {"exit1"}


@pytest.mark.parametrize("kind", EVERY_FETCHER)
@pytest.mark.parametrize("nickname", ["exit2", "exit3"])  # interactive, self-clearing
def test_a_chain_of_redirects_across_two_hosts_that_ends_on_a_challenge_is_a_challenge(bed, lane, fetchers, kind,
                                                                                       nickname):
    result, served = probe(bed, lane, fetchers(kind), nickname, url_of(bed, "portal", "https", "/go"))
    assert judge(result, classify).kind == "challenge"
    assert len(result.redirects) == 3
    hops = [(e["host"], e["path"], e["status"]) for e in served][:4]
    assert hops == [("portal.test", "/go", 302), ("www.portal.test", "/sso/authorize", 302),
                    ("portal.test", "/sso/callback", 302), ("www.portal.test", "/account", 403)]
    assert {entry["exit"] for entry in served} == {nickname}
