"""Reading the top frame's document responses out of chromedriver's performance log."""

import json
import time

import pytest
from selenium.common.exceptions import TimeoutException, WebDriverException

from exporter.fetch import chromium
from exporter.fetch.chromium import ChromiumBrowser, net_error_reason
from exporter.fetch.perflog import NetworkLog, split_headers

TAB = "TAB1"


def entry(method: str, **params) -> dict:
    return {"message": json.dumps({"message": {"method": method, "params": params}, "webview": TAB}), "level": "INFO"}


def request(request_id, url, frame=TAB, kind="Document", redirect=None):
    params = {"requestId": request_id, "loaderId": f"L{request_id}", "frameId": frame, "type": kind,
              "request": {"url": url, "method": "GET"}}
    if redirect is not None:
        params["redirectResponse"] = redirect
    return entry("Network.requestWillBeSent", **params)


def response(request_id, url, status, headers, frame=TAB, kind="Document"):
    return entry("Network.responseReceived", requestId=request_id, frameId=frame, type=kind,
                 response={"url": url, "status": status, "headers": headers})


def extra(request_id, status, headers):
    return entry("Network.responseReceivedExtraInfo", requestId=request_id, statusCode=status, headers=headers)


def test_challenge_then_reload_gives_two_documents_with_wire_headers():
    log = NetworkLog(TAB)
    log.add([
        request("1", "https://news.test/"),
        extra("1", 403, {"cf-mitigated": "challenge", "Set-Cookie": "a=1\nb=2"}),  # before its response
        response("1", "https://news.test/", 403, {"cf-mitigated": "challenge"}),
        request("9", "https://news.test/favicon.ico", kind="Other"),
        response("9", "https://news.test/favicon.ico", 404, {}, kind="Other"),
    ])
    log.add([
        request("2", "https://news.test/"),
        response("2", "https://news.test/", 200, {"content-type": "text/html"}),
    ])
    first, reload = log.documents()
    assert (first.status, first.is_redirect) == (403, False)
    assert first.headers == (("cf-mitigated", "challenge"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"))
    assert (reload.request_id, reload.status, reload.headers) == ("2", 200, (("content-type", "text/html"),))


def test_redirect_hops_come_first_and_pair_with_their_own_extra_info():
    log = NetworkLog(TAB)
    log.add([
        request("1", "http://news.test/"),
        extra("1", 301, {"Location": "https://news.test/"}),
        request("1", "https://news.test/", redirect={"url": "http://news.test/", "status": 301, "headers": {"Location": "https://news.test/"}}),
        response("1", "https://news.test/", 200, {"server": "edge"}),
        extra("1", 200, {"server": "edge", "Set-Cookie": "s=1"}),
    ])
    hop, landing = log.documents()
    assert (hop.url, hop.status, hop.is_redirect) == ("http://news.test/", 301, True)
    assert (landing.url, landing.status, landing.is_redirect) == ("https://news.test/", 200, False)
    assert ("Set-Cookie", "s=1") in landing.headers


def test_iframe_documents_are_not_the_page():
    log = NetworkLog(TAB)
    log.add([
        request("1", "https://news.test/"),
        response("1", "https://news.test/", 200, {}),
        request("2", "https://captcha.test/frame", frame="CHILD"),
        response("2", "https://captcha.test/frame", 403, {}, frame="CHILD"),
    ])
    assert [doc.url for doc in log.documents()] == ["https://news.test/"]
    assert log.origins() == {"https://news.test", "https://captcha.test"}


def test_failed_document_is_reported_with_its_net_error():
    log = NetworkLog(TAB)
    log.add([
        request("1", "https://news.test/"),
        entry("Network.loadingFailed", requestId="1", errorText="net::ERR_SOCKS_CONNECTION_FAILED", canceled=False),
    ])
    assert log.documents() == []
    failure = log.failure()
    assert (failure.url, failure.error) == ("https://news.test/", "net::ERR_SOCKS_CONNECTION_FAILED")


def test_net_errors_map_to_fetch_error_reasons():
    assert net_error_reason("net::ERR_SOCKS_CONNECTION_FAILED") == "circuit"
    assert net_error_reason("net::ERR_CERT_AUTHORITY_INVALID") == "tls"
    assert net_error_reason("net::ERR_TIMED_OUT") == "timeout"
    assert net_error_reason("net::ERR_CONNECTION_REFUSED") == "connection"


def test_split_headers_keeps_each_repeated_value():
    assert split_headers({"Set-Cookie": "a=1\nb=2", "Server": "x"}) == (
        ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Server", "x"))


def test_each_document_names_its_loader():
    log = NetworkLog(TAB)
    log.add([request("1", "https://news.test/"), response("1", "https://news.test/", 200, {})])
    assert [doc.loader_id for doc in log.documents()] == ["L1"]


class LaggingDriver:
    """A tab that already shows the gate's next page while the log still lacks that page's response.

    The page is read through DevTools: ``Page.getFrameTree`` names the shown
    document's loader, ``Runtime.evaluate`` reads its URL and source."""

    current_url = "https://shop.test/"

    def __init__(self, shown: str, pages: list[str], batches: list[list[dict]]):
        self.shown, self.pages, self.batches = shown, pages, batches

    def get_log(self, kind):
        return self.batches.pop(0) if self.batches else []

    def execute_cdp_cmd(self, command, params):
        if command == "Runtime.evaluate":
            assert params["returnByValue"] and chromium.SHOWN_JS in params["expression"]
            return {"result": {"type": "object", "value": self.evaluate()}}
        assert command == "Page.getFrameTree"
        return {"frameTree": {"frame": {"id": TAB, "loaderId": self.loader(), "url": self.current_url}}}

    def loader(self) -> str:
        return self.shown

    def evaluate(self) -> list:
        return [self.current_url, "complete", self.pages[0]]


def reading(driver) -> ChromiumBrowser:
    browser = object.__new__(ChromiumBrowser)  # its Chromium is the fake driver
    browser.driver, browser.tab = driver, TAB
    browser._start_recording()
    return browser


def test_a_page_is_read_with_its_own_response_when_the_log_lags():
    gate = [request("1", "https://shop.test/"), response("1", "https://shop.test/", 403, {"x-gate": "pow"})]
    page = [request("2", "https://shop.test/"), response("2", "https://shop.test/", 200, {"x-page": "shop"})]
    driver = LaggingDriver("L2", ["<html>the shop</html>"], [[], gate, [], page])
    browser = reading(driver)
    read = browser._read_page()
    assert (read.status, read.headers, read.body) == (200, (("x-page", "shop"),), "<html>the shop</html>")


def test_a_document_without_a_response_is_read_with_the_latest_once_the_wait_is_over(monkeypatch):
    monkeypatch.setattr(chromium, "DOCUMENT_LOG_WAIT_SECONDS", 0.2)
    gate = [request("1", "https://shop.test/"), response("1", "https://shop.test/", 403, {})]
    browser = reading(LaggingDriver("L-error-page", ["<html>error</html>"], [[], gate]))
    assert browser._read_page().status == 403
    started = time.monotonic()
    assert browser._read_page().status == 403
    assert time.monotonic() - started < 0.1, "a document known to have no response is not waited for again"


def test_a_landing_the_tab_navigated_away_from_is_the_shown_page_with_its_own_status():
    """The gate (request 1, a 403) solved itself and the tab shows the site's page (request 2)."""
    log = [request("1", "https://shop.test/"), response("1", "https://shop.test/", 403, {}),
           request("2", "https://shop.test/"), response("2", "https://shop.test/", 200, {})]
    driver = LaggingDriver("L2", ["<html>the shop</html>"], [[], log])
    browser = reading(driver)
    browser._netlog.add(driver.get_log("performance"))
    read = browser._read_landing(browser._netlog.documents()[0])
    assert (read.status, read.body) == (200, "<html>the shop</html>"), "never the gate's 403 beside the shop"


class NavigatingDriver(LaggingDriver):
    """A tab in the middle of committing a new document: its first reads fail as the context goes."""

    aborted = 2

    def evaluate(self):
        if self.aborted:
            self.aborted -= 1
            raise WebDriverException('unknown error: unhandled inspector error: '
                                     '{"code":-32000,"message":"Execution context was destroyed."}')
        return super().evaluate()


def test_a_read_aborted_by_a_navigation_is_made_again():
    log = [request("1", "https://shop.test/"), response("1", "https://shop.test/", 200, {})]
    driver = NavigatingDriver("L1", ["<html>the shop</html>"], [[], log])
    browser = reading(driver)
    browser._netlog.add(driver.get_log("performance"))
    read = browser._read_landing(browser._netlog.documents()[0])
    assert (read.status, read.body, driver.aborted) == (200, "<html>the shop</html>", 0)


class RefreshingDriver(LaggingDriver):
    """A page that reloads itself faster than it can be read: each look at the frame finds a new document."""

    looks = 0

    def loader(self):
        self.looks += 1
        return f"L{self.looks}"


def test_a_page_that_keeps_reloading_is_read_as_its_last_document_once_the_wait_is_over(monkeypatch):
    monkeypatch.setattr(chromium, "NAVIGATION_WAIT_SECONDS", 0.3)
    driver = RefreshingDriver("", ["<html>502 bad gateway</html>"], [])
    started = time.monotonic()
    loader, url, source = reading(driver)._shown()
    assert 0.3 <= time.monotonic() - started < 1.0
    assert (url, source) == ("https://shop.test/", "<html>502 bad gateway</html>")
    assert driver.looks > 2 and loader == f"L{driver.looks - 1}", "the loader read just before the source"


class ParsingDriver(LaggingDriver):
    """A document just committed: the parser has not yet had its body for the first ``unparsed`` reads."""

    unparsed = 3

    def evaluate(self):
        if self.unparsed:
            self.unparsed -= 1
            return [self.current_url, "loading", "<html><head></head><body></body></html>"]
        return super().evaluate()


def test_a_document_still_being_parsed_is_read_again_once_its_body_is_in():
    driver = ParsingDriver("L1", ['<html><body><div id="cf-error-details">502</div></body></html>'], [])
    assert (reading(driver)._shown(), driver.unparsed) == (
        ("L1", "https://shop.test/", '<html><body><div id="cf-error-details">502</div></body></html>'), 0)


def test_a_document_never_parsed_is_read_as_it_is_once_the_wait_is_over(monkeypatch):
    monkeypatch.setattr(chromium, "NAVIGATION_WAIT_SECONDS", 0.3)
    driver = ParsingDriver("L1", ["<html>never</html>"], [])
    driver.unparsed = 10**6
    started = time.monotonic()
    assert reading(driver)._shown() == ("L1", "https://shop.test/", "<html><head></head><body></body></html>")
    assert 0.3 <= time.monotonic() - started < 1.0


class RefreshingParsingDriver(RefreshingDriver):
    """A page that reloads itself, read alternately complete and just after a commit."""

    def evaluate(self):
        if self.looks % 4 == 1:
            return [self.current_url, "loading", "<html><head></head><body></body></html>"]
        return super().evaluate()


def test_a_page_that_keeps_reloading_is_read_as_its_last_parsed_document(monkeypatch):
    monkeypatch.setattr(chromium, "NAVIGATION_WAIT_SECONDS", 0.3)
    for _ in range(3):  # the wait may end on either kind of read
        _, _, source = reading(RefreshingParsingDriver("", ["<html>502 bad gateway</html>"], []))._shown()
        assert source == "<html>502 bad gateway</html>"


class DeadRenderer(LaggingDriver):
    def evaluate(self):
        raise TimeoutException("timeout: Timed out receiving message from renderer")


def test_a_read_that_never_succeeds_fails_once_the_wait_is_over(monkeypatch):
    monkeypatch.setattr(chromium, "NAVIGATION_WAIT_SECONDS", 0.3)
    started = time.monotonic()
    with pytest.raises(TimeoutException, match="receiving message from renderer"):
        reading(DeadRenderer("L1", ["<html></html>"], []))._shown()
    assert 0.3 <= time.monotonic() - started < 1.0
