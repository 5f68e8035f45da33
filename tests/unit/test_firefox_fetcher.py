"""The Firefox-family fetcher with a stand-in driver: probe flow, wipe, errors, warm pool.

The stand-in plays geckodriver's part: BiDi events reach the callbacks the
browser registered, navigation raises what selenium raises, and its "process"
is a real process group (a shell and a child in a session of their own), so
the pool's liveness checks and kills act on real processes.
"""

import contextlib
import subprocess
import time
from pathlib import Path

import pytest
from selenium.common.exceptions import TimeoutException, WebDriverException

from exporter.config import BrowserFetcherConfig
from exporter.fetch.bidilog import FETCH_ERROR, RESPONSE_STARTED
from exporter.fetch.browser_pool import live_processes
from exporter.fetch.gecko import WIPE_SCRIPT, GeckoFetcher
from exporter.values import FetchError, Lane, Verdict

TAB = "tab-1"
LANE = Lane(0, "127.0.0.1", 19050, 1)


def classify(response):
    if "challenge" in response.body:
        return Verdict("challenge", "cloudflare", ())
    if "blocked" in response.body:
        return Verdict("block", "cloudflare", ())
    return Verdict("ok", None, ())


def started(url, status, headers=(), request="r1"):
    return RESPONSE_STARTED, {
        "context": TAB, "navigation": "n1", "request": {"request": request, "url": url},
        "response": {"url": url, "status": status,
                     "headers": [{"name": n, "value": {"type": "string", "value": v}} for n, v in headers]},
    }


class Site:
    """What navigating to one URL does: events fired, then pages shown one read after another."""

    def __init__(self, events=(), pages=("<p>ok</p>",), timings=({},), error=None, crash=False):
        self.events, self.pages, self.timings, self.error = list(events), list(pages), list(timings), error
        self.crash = crash  # the browser's processes die while it loads the page


class FakeConnection:
    def __init__(self):
        self.callbacks, self.commands = {}, []

    def add_callback(self, event, callback):
        self.callbacks.setdefault(event.event_class, []).append(lambda params: callback(event.from_json(params)))

    def execute(self, command):
        self.commands.append(next(command))

    def fire(self, method, params):
        for callback in self.callbacks.get(method, []):
            callback(params)


class FakeService:
    """A session of two processes, like geckodriver and its browser (ready once both run)."""

    def __init__(self):
        self.process = subprocess.Popen(["sh", "-c", "sleep 300 & wait"], start_new_session=True)
        deadline = time.monotonic() + 10
        while len(live_processes(self.process.pid, "no marker")) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)


class FakeDriver:
    CONTEXT_CHROME = "chrome"

    def __init__(self, sites):
        self.sites = sites
        self.service = FakeService()
        self._websocket_connection = FakeConnection()
        self.current_window_handle = TAB
        self.window_handles = [TAB]
        self.actions, self.site, self.current_url = [], None, "about:blank"
        self.switch_to = self

    script = None  # the real property opens the BiDi websocket

    def window(self, handle):
        self.actions.append(("switch", handle))

    def close(self):
        self.actions.append(("close",))

    @contextlib.contextmanager
    def context(self, name):
        self.actions.append(("context", name))
        yield
        self.actions.append(("context", "content"))

    def execute_async_script(self, script):
        self.actions.append(("wipe" if script == WIPE_SCRIPT else "async script",))
        return 0

    def set_page_load_timeout(self, seconds):
        self.timeout = seconds

    def get(self, url):
        self.actions.append(("get", url))
        if url == "about:blank":
            return
        self.site, self.current_url = self.sites[url], url
        for method, params in self.site.events:
            self._websocket_connection.fire(method, params)
        if self.site.crash:
            self.service.process.kill()
            self.service.process.wait()
        if self.site.error is not None:
            raise self.site.error

    def execute_script(self, script):
        return self.site.timings.pop(0) if len(self.site.timings) > 1 else self.site.timings[0]

    @property
    def page_source(self):
        page = self.site.pages.pop(0) if len(self.site.pages) > 1 else self.site.pages[0]
        if isinstance(page, tuple):  # (body, events the page's reload fires)
            page, events = page
            for method, params in events:
                self._websocket_connection.fire(method, params)
        return page

    def get_screenshot_as_png(self):
        return b"\x89PNG fake"


class FakeFetcher(GeckoFetcher):
    name = "firefox"

    def __init__(self, sites, cfg=None, start_error=None):
        super().__init__(cfg or BrowserFetcherConfig(challenge_wait=5.0), classify)
        self.sites, self.start_error, self.drivers, self.homes = sites, start_error, [], []

    def _start_driver(self, lane, home, profile):
        self.homes.append(home)
        if self.start_error is not None:
            raise self.start_error
        self.drivers.append(FakeDriver(self.sites))
        return self.drivers[-1]


@pytest.fixture
def fetchers():
    made = []

    def make(*args, **kwargs):
        made.append(FakeFetcher(*args, **kwargs))
        return made[-1]

    yield make
    for fetcher in made:
        fetcher.close()


def test_redirect_then_page_gives_first_and_final_responses_after_a_wipe(fetchers):
    timing = {"timeOrigin": 1000.0, "connectStart": 10, "connectEnd": 60, "responseStart": 200,
              "domContentLoadedEventEnd": 400, "loadEventEnd": 1500}
    site = Site(events=[started("http://news.test/", 302, [("Location", "/home")]),
                        started("http://news.test/home", 200, [("Set-Cookie", "a=1")])],
                pages=["<p>ok</p>"], timings=[timing])
    fetcher = fetchers({"http://news.test/": site})
    result = fetcher.fetch("http://news.test/", LANE, timeout=30)
    driver = fetcher.drivers[0]
    assert (result.first.status, result.first.url) == (200, "http://news.test/home")  # the page, not the hop
    assert (result.final.status, result.final.body) == (200, "<p>ok</p>")
    assert result.final.cookie_names == ["a"]
    assert result.redirects == ("http://news.test/",)
    assert result.outcome is None and result.load_seconds == 1.5
    assert result.phases == {"connect": 0.05, "ttfb": 0.2, "dom_content_loaded": 0.4}
    assert driver.actions == [("switch", TAB), ("get", "about:blank"), ("context", "chrome"), ("wipe",),
                              ("context", "content"), ("get", "http://news.test/")]
    assert driver.timeout == 30
    assert driver._websocket_connection.commands == [
        {"method": "session.subscribe", "params": {"events": [RESPONSE_STARTED, FETCH_ERROR]}}]


def test_challenge_that_reloads_into_the_page_is_cleared_with_navigation_timing(fetchers):
    reload = [started("http://news.test/", 200, request="r2")]
    site = Site(events=[started("http://news.test/", 403, [("cf-mitigated", "challenge")])],
                pages=["challenge", "challenge", ("<p>ok</p>", reload)],
                timings=[{"timeOrigin": 1000.0, "loadEventEnd": 300},
                         {"timeOrigin": 3000.0, "domContentLoadedEventEnd": 250}])
    fetcher = fetchers({"http://news.test/": site})
    result = fetcher.fetch("http://news.test/", LANE, timeout=30)
    assert result.first.status == 403 and result.first.body == "challenge"
    assert (result.final.status, result.final.body) == (200, "<p>ok</p>")
    assert result.outcome == "cleared" and result.clear_seconds == 2.25


def test_block_page_is_blocked(fetchers):
    site = Site(events=[started("http://news.test/", 403)], pages=["blocked"])
    result = fetchers({"http://news.test/": site}).fetch("http://news.test/", LANE, timeout=30)
    assert result.outcome == "blocked" and result.final.status == 403


@pytest.mark.parametrize("error_text, page, reason", [
    ("NS_ERROR_CONNECTION_REFUSED", "about:neterror?e=connectionFailure", "circuit"),
    ("NS_ERROR_NET_TIMEOUT", "about:neterror?e=netTimeout", "timeout"),
    ("SEC_ERROR_UNKNOWN_ISSUER", "about:certerror?e=nssBadCert", "tls"),
    ("NS_ERROR_NET_RESET", "about:neterror?e=netReset", "connection"),
])
def test_error_page_becomes_a_fetch_error_with_its_reason(fetchers, error_text, page, reason):
    failed = (FETCH_ERROR, {"context": TAB, "navigation": "n1", "errorText": error_text,
                            "request": {"request": "r1", "url": "http://news.test/"}})
    site = Site(events=[failed], error=WebDriverException(f"Reached error page: {page}&u=http%3A//news.test/"))
    fetcher = fetchers({"http://news.test/": site})
    with pytest.raises(FetchError) as error:
        fetcher.fetch("http://news.test/", LANE, timeout=30)
    assert error.value.reason == reason and error_text in str(error.value)
    assert fetcher.pool.peek(LANE) is not None  # the browser answered: nothing against it


def test_timeout_discards_the_browser_and_kills_its_processes(fetchers):
    fetcher = fetchers({"http://slow.test/": Site(error=TimeoutException("timed out"))})
    with pytest.raises(FetchError) as error:
        fetcher.fetch("http://slow.test/", LANE, timeout=5)
    assert error.value.reason == "timeout"
    process = fetcher.drivers[0].service.process
    assert process.poll() is not None and fetcher.pool.peek(LANE) is None
    assert not fetcher.homes[0].exists()


def test_warm_browser_serves_probes_until_recycled(fetchers):
    sites = {"http://news.test/": Site(events=[started("http://news.test/", 200)])}
    fetcher = fetchers(sites, cfg=BrowserFetcherConfig(recycle_after=2))
    for _ in range(3):
        fetcher.fetch("http://news.test/", LANE, timeout=30)
    first, second = fetcher.drivers
    assert first.actions.count(("wipe",)) == 2 and second.actions.count(("wipe",)) == 1
    assert first.service.process.poll() is not None and second.service.process.poll() is None
    assert fetcher.pool.recycled == 1
    assert fetcher.screenshot(LANE) == b"\x89PNG fake"
    assert fetcher.screenshot(Lane(1, "127.0.0.1", 19052, 2)) is None


def test_a_browser_dead_during_the_probe_is_a_browser_error_and_is_replaced(fetchers):
    sites = {"http://news.test/": Site(events=[started("http://news.test/", 200)]),
             "http://crash.test/": Site(crash=True, error=WebDriverException("Failed to decode response from marionette"))}
    fetcher = fetchers(sites)
    fetcher.fetch("http://news.test/", LANE, timeout=30)
    with pytest.raises(FetchError) as error:
        fetcher.fetch("http://crash.test/", LANE, timeout=30)
    assert error.value.reason == "browser" and "died" in str(error.value)
    assert fetcher.pool.peek(LANE) is None and not fetcher.homes[0].exists()
    fetcher.fetch("http://news.test/", LANE, timeout=30)
    assert len(fetcher.drivers) == 2


def test_a_browser_found_dead_before_the_probe_is_replaced_first(fetchers):
    fetcher = fetchers({"http://news.test/": Site(events=[started("http://news.test/", 200)])})
    fetcher.fetch("http://news.test/", LANE, timeout=30)
    fetcher.drivers[0].service.process.kill()
    fetcher.drivers[0].service.process.wait()
    fetcher.fetch("http://news.test/", LANE, timeout=30)
    assert len(fetcher.drivers) == 2 and fetcher.pool.recycled == 1


def test_a_browser_that_cannot_start_leaves_nothing_behind(fetchers):
    fetcher = fetchers({}, start_error=FetchError("browser", "geckodriver is not on PATH"))
    with pytest.raises(FetchError) as error:
        fetcher.fetch("http://news.test/", LANE, timeout=30)
    assert error.value.reason == "browser" and "geckodriver" in str(error.value)
    assert not Path(fetcher.homes[0]).exists()


def test_a_driver_start_failure_is_a_browser_error(fetchers):
    fetcher = fetchers({}, start_error=WebDriverException("Process unexpectedly closed with status 255"))
    with pytest.raises(FetchError) as error:
        fetcher.fetch("http://news.test/", LANE, timeout=30)
    assert error.value.reason == "browser" and "status 255" in str(error.value)
