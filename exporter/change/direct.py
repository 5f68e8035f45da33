"""Fetching a target without tor, for the baseline: the page the site serves to everyone.

The request is the HTTP fetcher's (same headers, body cap, deadline and
error reasons); only the route differs: no proxy, and ``trust_env`` off so
HTTP(S)_PROXY cannot put one back.  ``resolve`` pins host names to addresses
the way ``curl --resolve`` does: the socket goes to the address while the
Host header, TLS SNI and certificate check keep using the name.
"""

from __future__ import annotations

import time
from urllib.parse import urljoin

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from exporter.config import HttpFetcherConfig
from exporter.fetch.http import MAX_REDIRECTS, REDIRECT_STATUSES, HttpFetcher
from exporter.values import FetchError, Response


def fetch_direct(url: str, config: HttpFetcherConfig, resolve: dict[str, str] | None = None) -> Response:
    """The page ``url`` leads to, straight from this machine, redirects followed as a probe follows
    them (the baseline must be the page a probe ends on, not an apex's redirect); raises FetchError."""
    fetcher = HttpFetcher(config)
    deadline = time.monotonic() + config.timeout
    with requests.Session() as session:
        session.trust_env = False
        session.verify = str(config.ca_file) if config.ca_file else True
        if resolve:
            adapter = _pinned_adapter({host.lower(): address for host, address in resolve.items()})
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        for _ in range(MAX_REDIRECTS + 1):
            response, _ = fetcher._get(session, url, deadline)
            location = response.header("location")
            if response.status not in REDIRECT_STATUSES or not location:
                return response
            url = urljoin(url, location)
    raise FetchError("connection", f"more than {MAX_REDIRECTS} redirects from {url}")


def _pinned_adapter(resolve: dict[str, str]) -> HTTPAdapter:
    """An adapter whose connections dial ``resolve[host]`` but keep ``host`` for Host, SNI and verification."""

    class Pinned:
        def _new_conn(self):
            # urllib3 dials _dns_host, which also names the Host header, SNI and the
            # certificate check: swap in the address for the dial only.
            name = self._dns_host
            self._dns_host = resolve.get(name.rstrip(".").lower(), name)
            try:
                return super()._new_conn()
            finally:
                self._dns_host = name

    class PinnedHTTPPool(HTTPConnectionPool):
        ConnectionCls = type("PinnedHTTPConnection", (Pinned, HTTPConnection), {})

    class PinnedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = type("PinnedHTTPSConnection", (Pinned, HTTPSConnection), {})

    adapter = HTTPAdapter()
    adapter.poolmanager.pool_classes_by_scheme = {"http": PinnedHTTPPool, "https": PinnedHTTPSPool}
    return adapter
