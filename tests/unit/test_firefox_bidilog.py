"""Reading the top-level context's document responses out of WebDriver BiDi network events.

The payloads follow the shape Firefox sends for ``network.responseStarted``
and ``network.fetchError`` (W3C WebDriver BiDi, network module).
"""

import threading

from exporter.fetch.bidilog import FETCH_ERROR, RESPONSE_STARTED, BidiLog, bidi_headers

TAB = "6442450945"


def header(name, value):
    return {"name": name, "value": {"type": "string", "value": value}}


def started(request_id, url, status, headers=(), context=TAB, navigation="nav-1", redirects=0):
    return {
        "context": context,
        "navigation": navigation,
        "redirectCount": redirects,
        "request": {"request": request_id, "url": url, "method": "GET", "headers": [], "cookies": [], "timings": {}},
        "response": {"url": url, "protocol": "http/1.1", "status": status, "statusText": "", "fromCache": False,
                     "headers": list(headers), "mimeType": "text/html", "bytesReceived": 0},
        "timestamp": 1700000000000,
        "isBlocked": False,
    }


def test_redirect_then_challenge_page_in_order_with_wire_headers():
    log = BidiLog(TAB)
    log.add(RESPONSE_STARTED, started("7", "http://news.test/", 302, [header("Location", "/home")]))
    log.add(RESPONSE_STARTED, started("7", "http://news.test/home", 403, [
        header("cf-mitigated", "challenge"), header("Set-Cookie", "a=1\nb=2")],  # as Firefox 153 sends them
        redirects=1))
    log.add(RESPONSE_STARTED, started("8", "http://news.test/logo.png", 200, navigation=None))  # sub-resource
    log.add(RESPONSE_STARTED, started("9", "http://ads.test/", 200, context="other-tab"))
    documents = log.documents()
    assert [(d.url, d.status, d.is_redirect) for d in documents] == [
        ("http://news.test/", 302, True), ("http://news.test/home", 403, False)]
    assert documents[0].request_id == documents[1].request_id == "7"
    assert documents[1].headers == (("cf-mitigated", "challenge"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"))


def test_not_modified_and_location_less_3xx_are_answers_not_redirects():
    log = BidiLog(TAB)
    log.add(RESPONSE_STARTED, started("1", "http://a.test/", 304))
    log.add(RESPONSE_STARTED, started("2", "http://b.test/", 300))
    assert [d.is_redirect for d in log.documents()] == [False, False]


def test_failed_top_document_is_reported_and_a_failed_subresource_is_not():
    log = BidiLog(TAB)
    sub = {"context": TAB, "navigation": None, "request": {"request": "3", "url": "http://x.test/a.js"},
           "errorText": "NS_ERROR_CONNECTION_REFUSED"}
    top = {"context": TAB, "navigation": "nav-2", "request": {"request": "4", "url": "http://news.test/"},
           "errorText": "NS_ERROR_UNKNOWN_HOST"}
    log.add(FETCH_ERROR, sub)
    assert log.failure() is None
    log.add(FETCH_ERROR, top)
    failure = log.failure()
    assert (failure.request_id, failure.url, failure.error) == ("4", "http://news.test/", "NS_ERROR_UNKNOWN_HOST")
    assert log.documents() == []


def test_clear_forgets_the_previous_probe():
    log = BidiLog(TAB)
    log.add(RESPONSE_STARTED, started("1", "http://news.test/", 200))
    log.clear()
    assert log.documents() == [] and log.failure() is None


def test_events_from_many_threads_are_all_kept():
    log = BidiLog(TAB)

    def deliver(start):
        for i in range(start, start + 200):
            log.add(RESPONSE_STARTED, started(str(i), f"http://news.test/{i}", 200))

    threads = [threading.Thread(target=deliver, args=(n * 200,)) for n in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({d.request_id for d in log.documents()}) == 1000


def test_bidi_headers_keep_order_and_split_joined_repeats():
    assert bidi_headers([header("B", "1"), header("a", "2\n3"), header("B", "4")]) == (
        ("B", "1"), ("a", "2"), ("a", "3"), ("B", "4"))
