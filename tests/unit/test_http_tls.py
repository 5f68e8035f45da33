"""The HTTP fetcher checks certificates with a context loaded once: still every check, never a bundle per connection."""

import http.server
import threading

import pytest
from support.socks_server import SocksServer

from exporter.config import HttpFetcherConfig
from exporter.fetch import http as http_fetch
from exporter.fetch.http import HttpFetcher
from exporter.values import FetchError, Lane
from testbed.tls import issue_certificates, server_context


class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<title>hello</title>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    certs = issue_certificates(tmp_path_factory.mktemp("tls"), ["site.test"])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    server.socket = server_context(certs).wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    socks = SocksServer()
    yield certs, server.server_port, Lane(0, "127.0.0.1", socks.port, 1001)
    server.shutdown()
    socks.shutdown()


def test_a_certificate_from_the_configured_ca_is_accepted(site):
    certs, port, lane = site
    fetch = HttpFetcher(HttpFetcherConfig(ca_file=certs.ca_file)).fetch(f"https://site.test:{port}/", lane, 10)
    assert fetch.final.status == 200 and "hello" in fetch.final.body


def test_an_unknown_ca_is_refused(site):
    _certs, port, lane = site
    with pytest.raises(FetchError) as refused:
        HttpFetcher(HttpFetcherConfig()).fetch(f"https://site.test:{port}/", lane, 10)
    assert refused.value.reason == "tls"


def test_a_name_the_certificate_does_not_carry_is_refused(site):
    certs, port, lane = site
    with pytest.raises(FetchError) as refused:
        HttpFetcher(HttpFetcherConfig(ca_file=certs.ca_file)).fetch(f"https://other.test:{port}/", lane, 10)
    assert refused.value.reason == "tls"


def test_the_bundle_is_loaded_once_per_fetcher_not_per_connection(site, monkeypatch):
    certs, port, lane = site
    fetcher = HttpFetcher(HttpFetcherConfig(ca_file=certs.ca_file))
    loads = []
    original = http_fetch.ssl.SSLContext.load_verify_locations
    monkeypatch.setattr(http_fetch.ssl.SSLContext, "load_verify_locations",
                        lambda context, *args, **kwargs: loads.append(args) or original(context, *args, **kwargs))
    for _ in range(3):
        fetcher.fetch(f"https://site.test:{port}/", lane, 10)
    assert loads == []
