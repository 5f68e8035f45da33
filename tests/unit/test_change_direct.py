"""fetch_direct: no proxy whatever the environment says, names pinned to loopback addresses."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from exporter.change.direct import fetch_direct
from exporter.config import HttpFetcherConfig
from exporter.values import FetchError


class Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict]] = []

    def do_GET(self):
        Recorder.seen.append({"host": self.headers["Host"], "user_agent": self.headers["User-Agent"],
                              "path": self.path})
        if self.path == "/apex":  # an apex sending visitors to www
            self.send_response(301)
            self.send_header("Location", f"http://www.shop.test:{self.server.server_address[1]}/p?q=1")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"<title>Hi</title>" + b"x" * 1000
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Set-Cookie", "a=1")
        self.send_header("Set-Cookie", "b=2")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    Recorder.seen.clear()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def test_a_pinned_name_reaches_the_address_and_keeps_its_host_header(server, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # would fail if honoured
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    config = HttpFetcherConfig(timeout=5, user_agent="probe-agent/1")
    page = fetch_direct(f"http://shop.test:{server}/p?q=1", config, {"shop.test": "127.0.0.1"})
    assert page.status == 200
    assert page.url == f"http://shop.test:{server}/p?q=1"
    assert page.body.startswith("<title>Hi</title>")
    assert page.cookie_names == ["a", "b"]
    assert Recorder.seen == [{"host": f"shop.test:{server}", "user_agent": "probe-agent/1", "path": "/p?q=1"}]


def test_the_http_fetchers_body_cap_applies(server):
    with pytest.raises(FetchError) as error:
        fetch_direct(f"http://127.0.0.1:{server}/", HttpFetcherConfig(timeout=5, max_body_bytes=100))
    assert error.value.reason == "too_large"



def test_redirects_are_followed_to_the_page_a_probe_ends_on(server):
    config = HttpFetcherConfig(timeout=5)
    resolve = {"shop.test": "127.0.0.1", "www.shop.test": "127.0.0.1"}
    page = fetch_direct(f"http://shop.test:{server}/apex", config, resolve)
    assert (page.status, page.url) == (200, f"http://www.shop.test:{server}/p?q=1")
    assert [seen["host"].split(":")[0] for seen in Recorder.seen] == ["shop.test", "www.shop.test"]
