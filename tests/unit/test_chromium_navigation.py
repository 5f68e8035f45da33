"""A navigation chromedriver reports as failed in the network stack is counted by its meaning."""

from types import SimpleNamespace

import pytest
from selenium.common.exceptions import WebDriverException

from exporter.fetch.browser import BrowserSession
from exporter.fetch.browser_pool import BrowserPool
from exporter.fetch.chromium import ChromiumBrowser
from exporter.values import FetchError, Lane

LANE = Lane(0, "127.0.0.1", 9050, 1001)


class NavigationFails:
    """Just enough of a Chromium driver for a probe whose ``get`` raises what chromedriver raised."""

    window_handles = ("tab",)

    def __init__(self, error: WebDriverException):
        self.error = error
        self.switch_to = SimpleNamespace(window=lambda handle: None)

    def execute_cdp_cmd(self, command, params):
        if command == "Runtime.evaluate":
            return {"result": {"type": "boolean", "value": True}}  # chrome.benchmarking closed the connections
        return {}

    def set_page_load_timeout(self, seconds):
        pass

    def get_log(self, kind):
        return []

    def get(self, url):
        raise self.error


def browser(error: WebDriverException, home) -> ChromiumBrowser:
    session = ChromiumBrowser.__new__(ChromiumBrowser)  # no chromium: the driver is played
    BrowserSession.__init__(session, LANE, home)
    session._netlog, session.driver, session.tab = None, NavigationFails(error), "tab"
    session._service = SimpleNamespace(process=None)  # a driver that is gone, should the pool ask
    return session


@pytest.mark.parametrize(("message", "reason"), [
    # an exit refusing the stream (END reason MISC, e.g. a first hop its consensus did not list yet)
    ("unknown error: net::ERR_SOCKS_CONNECTION_FAILED\n  (Session info: chrome=120.0.6099.224)", "circuit"),
    ("unknown error: net::ERR_SOCKS_CONNECTION_HOST_UNREACHABLE", "circuit"),
    ("unknown error: net::ERR_CERT_AUTHORITY_INVALID", "tls"),
    ("unknown error: net::ERR_CONNECTION_RESET", "connection"),
])
def test_a_net_error_on_navigation_is_counted_by_its_meaning(tmp_path, message, reason):
    pool = BrowserPool(lambda lane: browser(WebDriverException(message), tmp_path), 100, 2**30, "chromium")
    with pytest.raises(FetchError) as caught:
        pool.probe(LANE, "https://news.test/", 10.0, classify=None, challenge_wait=0.0)
    assert caught.value.reason == reason
    assert str(caught.value) == f"https://news.test/: {message.split()[2]}"
    assert pool.peek(LANE) is not None  # the browser is fine: it stays warm


def test_another_driver_error_on_navigation_stays_a_browser_error(tmp_path):
    pool = BrowserPool(lambda lane: browser(WebDriverException("unknown error: session deleted"), tmp_path),
                       100, 2**30, "chromium")
    with pytest.raises(FetchError) as caught:
        pool.probe(LANE, "https://news.test/", 10.0, classify=None, challenge_wait=0.0)
    assert caught.value.reason == "browser"
