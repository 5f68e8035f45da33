"""Every fetcher on the direct lane: no proxy, host names pinned by ``baseline.resolve``; and a variant's identity."""

from __future__ import annotations

import pytest
from test_change_direct import Recorder, server  # noqa: F401 (server is a fixture)

from exporter.config import parse_config
from exporter.fetch.chromium import route_arguments
from exporter.fetch.factory import make_fetcher, settings_text
from exporter.fetch.gecko import proxy_prefs
from exporter.fetch.http import HttpFetcher
from exporter.values import DIRECT_LANE, FetchError, Lane

LANE = Lane(0, "127.0.0.1", 19050, 1)


def test_chromium_goes_through_the_lane_or_direct_with_names_pinned():
    assert route_arguments(LANE, {"news.test": "127.0.0.1"}) == [
        "--proxy-server=socks5://127.0.0.1:19050", "--proxy-bypass-list=<-loopback>"]
    assert route_arguments(DIRECT_LANE, {"news.test": "127.0.0.1", "a.test": "127.0.0.2"}) == [
        "--no-proxy-server", "--host-resolver-rules=MAP a.test 127.0.0.2, MAP news.test 127.0.0.1"]
    assert route_arguments(DIRECT_LANE, {}) == ["--no-proxy-server"]


def test_firefox_goes_direct_with_one_address_for_every_name():
    assert proxy_prefs(DIRECT_LANE, {"news.test": "127.0.0.1", "shop.test": "127.0.0.1"}) == {
        "network.proxy.type": 0, "network.http.http3.enable": False, "network.dns.forceResolve": "127.0.0.1"}
    assert "network.dns.forceResolve" not in proxy_prefs(DIRECT_LANE)
    with pytest.raises(FetchError, match="one address only"):
        proxy_prefs(DIRECT_LANE, {"news.test": "127.0.0.1", "shop.test": "127.0.0.2"})


def test_the_http_fetcher_on_the_direct_lane_ignores_proxies_and_pins_names(server, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # would fail if honoured
    config = parse_config("targets: [{name: a, url: 'http://a/'}]\n").fetchers.http
    result = HttpFetcher(config, {"shop.test": "127.0.0.1"}).fetch(f"http://shop.test:{server}/", DIRECT_LANE, 5)
    assert result.final.status == 200 and Recorder.seen[-1]["host"] == f"shop.test:{server}"


def test_variants_are_built_under_their_own_label_with_their_settings():
    config = parse_config("""
targets: [{name: a, url: 'http://a/', fetchers: [chromium, chromium-de, ua]}]
fetchers:
  chromium: {headless: true}
  variants:
    chromium-de: {kind: chromium, prefs: {intl.accept_languages: de-DE, b: true}, arguments: [--lang=de-DE]}
    ua: {kind: http, user_agent: probe/2, timeout: 7s}
""").fetchers
    chromium, _ = make_fetcher("chromium-de", config, classify=None)
    http, timeout = make_fetcher("ua", config, classify=None)
    try:
        assert (chromium.name, http.name, timeout) == ("chromium-de", "ua", 7.0)
        assert chromium.identity is None, "known once a browser started"
        assert http.identity[0] == "python-requests" and http.headers["User-Agent"] == "probe/2"
    finally:
        chromium.close()
    assert settings_text("chromium-de", config) == \
        "arguments=--lang=de-DE, prefs.b=true, prefs.intl.accept_languages=de-DE"
    assert settings_text("ua", config) == "user_agent=probe/2", "timeouts say how it runs, not what it is"
    assert settings_text("chromium", config) == ""
