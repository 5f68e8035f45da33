"""Reading the top frame's document responses out of chromedriver's performance log."""

import json

from exporter.fetch.chromium import net_error_reason
from exporter.fetch.perflog import NetworkLog, split_headers

TAB = "TAB1"


def entry(method: str, **params) -> dict:
    return {"message": json.dumps({"message": {"method": method, "params": params}, "webview": TAB}), "level": "INFO"}


def request(request_id, url, frame=TAB, kind="Document", redirect=None):
    params = {"requestId": request_id, "frameId": frame, "type": kind, "request": {"url": url, "method": "GET"}}
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
