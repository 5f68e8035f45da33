"""The Firefox fetcher through the private Tor network, one lane re-pinned exit by exit.

Real tor relays, the real edge, a real Firefox ESR driven by geckodriver (the
test bed, policy and pinned lane are the Chromium test's): exit1 gets the real
page, exit2 a self-clearing challenge, exit3 an interactive one, exit4 a block
page, and the edge's request log says which exit each request came through.
Runs when geckodriver is on PATH (Debian ships none; the Docker image has it).

Without geckodriver, the last test still checks what the fetcher relies on
against the real browser, speaking WebDriver BiDi and Marionette to Firefox
directly: the prefs, the shape of BiDi's network events, how tor's SOCKS
failures surface, and the chrome-context wipe.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import signal
import socket
import socketserver
import struct
import subprocess
import threading
import time

import pytest
import websocket
from test_chromium_testbed import CHALLENGE_DELAY, bed, exits_seen, news_url  # noqa: F401 (fixtures)

from exporter.config import BrowserFetcherConfig
from exporter.detect import classify
from exporter.fetch import browser_pool
from exporter.fetch.bidilog import EVENTS, BidiLog
from exporter.fetch.firefox import FirefoxFetcher
from exporter.fetch.gecko import (
    SYSTEM_ACCESS_ARGUMENT,
    WIPE_SCRIPT,
    browser_prefs,
    net_error_reason,
)
from exporter.values import Lane

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
needs_firefox = pytest.mark.skipif(shutil.which("firefox-esr") is None, reason="needs Debian's firefox-esr")
# on the tests Tor Browser's test imports too: Tor Browser needs geckodriver but not firefox-esr
needs_geckodriver = pytest.mark.skipif(shutil.which("geckodriver") is None,
                                       reason="needs geckodriver on PATH (Debian ships none)")


@pytest.fixture(scope="module")
def fetcher(bed):  # noqa: F811
    if shutil.which("firefox-esr") is None:
        pytest.skip("needs Debian's firefox-esr")
    firefox = FirefoxFetcher(BrowserFetcherConfig(ca_file=bed.edge.ca_file, challenge_wait=6.0), classify)
    yield firefox
    firefox.close()


def probe(bed, lane, fetcher, nickname, scheme="https"):  # noqa: F811
    """Pin the lane to ``nickname``, fetch news, and check the edge saw only that exit."""
    before = len(bed.edge.requests())
    result = fetcher.fetch(news_url(bed, scheme), lane.pin(nickname), timeout=60)
    assert exits_seen(bed, before) == {nickname}  # no keep-alive left over from the previous exit
    return result


@needs_geckodriver
def test_ok_page_over_https_loads_with_timing(bed, lane, fetcher):  # noqa: F811
    result = probe(bed, lane, fetcher, "exit1")
    assert result.first.status == 200 and classify(result.final).kind == "ok"
    assert result.outcome is None
    assert 0 < result.load_seconds < 60


@needs_geckodriver
def test_plain_http_target_is_not_upgraded(bed, lane, fetcher):  # noqa: F811
    result = probe(bed, lane, fetcher, "exit1", scheme="http")
    assert result.first.url.startswith("http://") and result.first.status == 200


@needs_geckodriver
def test_self_clearing_challenge_is_cleared_and_its_clearance_is_wiped(bed, lane, fetcher):  # noqa: F811
    first = probe(bed, lane, fetcher, "exit2")
    assert first.first.status == 403 and first.first.header("cf-mitigated") == "challenge"
    assert first.outcome == "cleared" and CHALLENGE_DELAY <= first.clear_seconds < CHALLENGE_DELAY + 5
    assert first.final.status == 200 and classify(first.final).kind == "ok"
    assert probe(bed, lane, fetcher, "exit1").first.status == 200
    again = probe(bed, lane, fetcher, "exit2")
    assert again.first.status == 403 and again.outcome == "cleared"


@needs_geckodriver
def test_interactive_challenge_and_block_page(bed, lane, fetcher):  # noqa: F811
    assert probe(bed, lane, fetcher, "exit3").outcome == "interactive"
    blocked = probe(bed, lane, fetcher, "exit4", scheme="http")
    assert blocked.first.status == 403 and blocked.outcome == "blocked"


@needs_geckodriver
def test_one_warm_browser_served_every_probe_and_dies_whole(bed, lane, fetcher):  # noqa: F811
    probe(bed, lane, fetcher, "exit1")
    assert fetcher.pool.recycled == 0
    assert fetcher.screenshot(lane.lane)[:8] == b"\x89PNG\r\n\x1a\n"
    browser = fetcher.pool.peek(lane.lane)
    session = browser.driver.service.process.pid
    assert len(browser_pool.live_processes(session, str(browser.home))) >= 2  # geckodriver and the browser
    fetcher.pool.discard(lane.lane)
    deadline = time.monotonic() + 10
    while browser_pool.live_processes(session, str(browser.home)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert browser_pool.live_processes(session, str(browser.home)) == []
    assert probe(bed, lane, fetcher, "exit1").first.status == 200


class Redirecting(http.server.BaseHTTPRequestHandler):
    """``/`` redirects to ``/home``, which sets two cookies."""

    def do_GET(self):
        body = b"<html><body>ok</body></html>" if self.path == "/home" else b""
        self.send_response(200 if body else 302)
        if body:
            self.send_header("Set-Cookie", "a=1")
            self.send_header("Set-Cookie", "b=2")
        else:
            self.send_header("Location", "/home")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Socks5(socketserver.BaseRequestHandler):
    """A SOCKS5 server standing in for tor: ``news.test`` is the web server on loopback; for any
    other name it answers the reply code tor sends when the exit cannot resolve it (4)."""

    def handle(self):
        client = self.request
        client.recv(client.recv(2)[1])
        client.sendall(b"\x05\x00")
        _version, _command, _reserved, kind = client.recv(4)
        host = client.recv(client.recv(1)[0]).decode() if kind == 3 else socket.inet_ntoa(client.recv(4))
        port = struct.unpack(">H", client.recv(2))[0]
        self.server.hosts.append(host)
        if host != "news.test":
            client.sendall(b"\x05\x04\x00\x01" + bytes(6))
            return
        upstream = socket.create_connection(("127.0.0.1", port))
        client.sendall(b"\x05\x00\x00\x01" + bytes(6))
        back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
        back.start()
        pump(client, upstream)
        back.join()


def pump(source, sink):
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def serve(server):
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class Marionette:
    """Firefox's own automation protocol: ``length:json`` packets, commands ``[0, id, name, params]``."""

    def __init__(self, port):
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.reader = self.socket.makefile("rb")
        self.ids = 0
        self.read()  # the greeting

    def read(self):
        length = b""
        while (char := self.reader.read(1)) != b":":
            length += char
        return json.loads(self.reader.read(int(length)))

    def command(self, name, params):
        self.ids += 1
        packet = json.dumps([0, self.ids, name, params]).encode()
        self.socket.sendall(str(len(packet)).encode() + b":" + packet)
        _kind, _id, error, result = self.read()
        assert error is None, error
        return result["value"] if isinstance(result, dict) and "value" in result else result


class Bidi:
    """WebDriver BiDi straight to Firefox's remote agent; events are kept in ``events``."""

    def __init__(self, port, deadline):
        while True:
            try:
                self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}/session", timeout=60,
                                                      suppress_origin=True)
                break
            except OSError:
                assert time.monotonic() < deadline, "Firefox's remote agent did not come up"
                time.sleep(0.5)
        self.ids, self.events = 0, []

    def command(self, method, params):
        self.ids += 1
        self.ws.send(json.dumps({"id": self.ids, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("type") == "event":
                self.events.append((message["method"], message["params"]))
            elif message.get("id") == self.ids:
                return message


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@needs_firefox
def test_real_firefox_keeps_the_facts_the_fetcher_relies_on(tmp_path):
    web = serve(http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirecting))
    socks = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Socks5)
    socks.daemon_threads, socks.hosts = True, []
    serve(socks)
    socks_lane = Lane(0, "127.0.0.1", socks.server_address[1], 1)
    bidi_port, marionette_port = free_port(), free_port()
    prefs = dict(browser_prefs(socks_lane), **{"marionette.port": marionette_port})
    (tmp_path / "user.js").write_text("".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n"
                                              for k, v in prefs.items()))
    firefox = subprocess.Popen(
        ["firefox-esr", "--headless", "--marionette", SYSTEM_ACCESS_ARGUMENT, "--remote-debugging-port",
         str(bidi_port), "--profile", str(tmp_path), "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        bidi = Bidi(bidi_port, time.monotonic() + 90)
        assert bidi.command("session.new", {"capabilities": {}})["type"] == "success"
        bidi.command("session.subscribe", {"events": list(EVENTS)})
        context = bidi.command("browsingContext.getTree", {})["result"]["contexts"][0]["context"]
        url = f"http://news.test:{web.server_address[1]}/"
        bidi.command("browsingContext.navigate", {"context": context, "url": url, "wait": "complete"})
        failed = bidi.command("browsingContext.navigate", {"context": context, "url": "http://gone.test/",
                                                            "wait": "complete"})
        time.sleep(1)  # events may trail the command's answer
        log = BidiLog(context)
        for method, params in bidi.events:
            log.add(method, params)
        first, final = log.documents()
        assert (first.status, first.is_redirect, final.status, final.url) == (302, True, 200, url + "home")
        assert [value for name, value in final.headers if name == "Set-Cookie"] == ["a=1", "b=2"]
        assert failed["type"] == "error" and net_error_reason(log.failure().error) == "circuit"
        assert set(socks.hosts) <= {"news.test", "gone.test", "firefox.settings.services.mozilla.com"}
        bidi.command("session.end", {})

        marionette = Marionette(marionette_port)
        marionette.command("WebDriver:NewSession", {"capabilities": {}})
        marionette.command("Marionette:SetContext", {"value": "chrome"})
        cookies = "return Services.cookies.cookies.map(c => c.name).sort()"
        assert marionette.command("WebDriver:ExecuteScript", {"script": cookies, "args": []}) == ["a", "b"]
        assert marionette.command("WebDriver:ExecuteAsyncScript", {"script": WIPE_SCRIPT, "args": []}) == 0
        assert marionette.command("WebDriver:ExecuteScript", {"script": cookies, "args": []}) == []
    finally:
        os.killpg(firefox.pid, signal.SIGKILL)
        firefox.wait()
        web.shutdown()
        socks.shutdown()
