"""The plain HTTP fetcher: requests through a lane's SocksPort, names resolved by the exit.

``socks5h://`` makes the SOCKS client send the host name to tor, so the exit
resolves it (a local lookup would leak the target and could differ from
what the exit sees). Each fetch uses a fresh session: a kept-alive
connection would carry the next probe out through the previous exit.

Certificates are checked with one SSL context per fetcher, loaded once:
given a CA bundle's path, requests has urllib3 load it into a new context for
every connection, about 20 ms of CPU for certifi's roots, the largest part of
an HTTPS probe's cost to the exporter.

On the direct lane (the control without Tor) there is no proxy, and
``trust_env`` stays off so HTTP(S)_PROXY cannot put one back.  ``resolve``
pins host names to addresses for those fetches the way ``curl --resolve``
does: the socket goes to the address while the Host header, TLS SNI and
certificate check keep using the name.
"""

from __future__ import annotations

import functools
import re
import ssl
import time
from urllib.parse import urljoin

import requests
from requests.adapters import HTTPAdapter
from requests.utils import DEFAULT_CA_BUNDLE_PATH
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.ssl_ import create_urllib3_context

from exporter.config import HttpFetcherConfig
from exporter.values import FetchError, FetchResult, Lane, Response

MAX_REDIRECTS = 10
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
BROWSER_HEADERS = {
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Accept-Language": "en-US,en;q=0.5",
    "Accept-Encoding": "gzip, deflate",
    "Upgrade-Insecure-Requests": "1",
}


class HttpFetcher:
    """Fetches with ``requests``: redirects followed and recorded, body capped, one deadline."""

    name = "http"

    def __init__(self, config: HttpFetcherConfig, resolve: dict[str, str] | None = None, label: str = "http"):
        """``resolve`` maps host names to addresses for direct fetches; ``label`` is the ``fetcher`` label."""
        self.config = config
        self.name = label
        self.headers = {"User-Agent": config.user_agent, **BROWSER_HEADERS, **config.headers}
        self.tls = trust_context(config.ca_file)
        self._resolve = {host.lower(): address for host, address in (resolve or {}).items()}

    @property
    def identity(self) -> tuple[str, str]:
        """(client, version) for captcha_fetcher_info: the HTTP library this fetcher is."""
        return "python-requests", requests.__version__

    def session(self, lane: Lane) -> requests.Session:
        """A fresh session for one fetch on ``lane``: through its SocksPort, or direct."""
        session = requests.Session()
        session.trust_env = False  # never let HTTP(S)_PROXY or NO_PROXY bypass tor (or add a proxy to direct)
        adapter = TrustedTLS(self.tls)
        if not lane.direct:
            proxy = f"socks5h://{lane.socks_host}:{lane.socks_port}"
            session.proxies = {"http": proxy, "https": proxy}
        elif self._resolve:
            pin_addresses(adapter, self._resolve)
            session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def fetch(self, url: str, lane: Lane, timeout: float) -> FetchResult:
        deadline = time.monotonic() + timeout
        started = time.monotonic()
        responses: list[Response] = []
        ttfb = None
        with self.session(lane) as session:
            while True:
                response, elapsed = self._get(session, url, deadline)
                ttfb = elapsed if ttfb is None else ttfb
                responses.append(response)
                location = response.header("location")
                if response.status not in REDIRECT_STATUSES or not location:
                    break
                if len(responses) > MAX_REDIRECTS:
                    raise FetchError("connection", f"more than {MAX_REDIRECTS} redirects from {responses[0].url}")
                url = urljoin(url, location)
        return FetchResult(
            first=responses[-1],  # the page the redirects led to; a plain client never reloads it
            final=responses[-1],
            redirects=tuple(r.url for r in responses[1:]),
            load_seconds=time.monotonic() - started,
            phases={"ttfb": ttfb},
        )

    def _get(self, session: requests.Session, url: str, deadline: float) -> tuple[Response, float]:
        """One request, no redirects followed; returns the response and its time to headers."""
        try:
            reply = session.get(url, headers=self.headers, allow_redirects=False, stream=True,
                                timeout=_remaining(deadline, url))
            with reply:
                body = self._read_body(reply, deadline, url)
                headers = tuple((k, v) for k, v in _wire_headers(reply))
                text = body.decode(reply.encoding or "utf-8", errors="replace")
                return Response(url=url, status=reply.status_code, headers=headers, body=text), \
                    reply.elapsed.total_seconds()
        except FetchError:
            raise
        except requests.exceptions.SSLError as exc:
            raise FetchError("tls", f"TLS failed for {url}: {_short(exc)}") from exc
        except requests.exceptions.Timeout as exc:
            raise FetchError("timeout", f"no answer from {url} in time: {_short(exc)}") from exc
        except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise FetchError("connection", f"connection to {url} failed: {_short(exc)}") from exc
        except requests.exceptions.RequestException as exc:
            raise FetchError("connection", f"request to {url} failed: {_short(exc)}") from exc

    def _read_body(self, reply: requests.Response, deadline: float, url: str) -> bytes:
        limit = self.config.max_body_bytes
        chunks, size = [], 0
        for chunk in reply.iter_content(chunk_size=65536):
            size += len(chunk)
            if size > limit:
                raise FetchError("too_large", f"body of {url} is larger than {limit} bytes")
            if time.monotonic() > deadline:
                raise FetchError("timeout", f"body of {url} still arriving at the deadline")
            chunks.append(chunk)
        return b"".join(chunks)

    def screenshot(self, lane: Lane) -> None:
        """A plain HTTP client renders nothing."""
        return

    def leave(self, lane: Lane) -> None:
        """Nothing runs after a fetch: its connections closed with its session."""

    def close(self) -> None:
        """Nothing to release: every fetch has its own session."""


@functools.lru_cache(maxsize=8)
def trust_context(ca_file=None) -> ssl.SSLContext:
    """An SSL context that requires a certificate from ``ca_file``'s CAs (requests' bundle when None);
    one per file for the process (the baseline's direct fetches make a fetcher each)."""
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    context.load_verify_locations(str(ca_file) if ca_file else DEFAULT_CA_BUNDLE_PATH)
    return context


class TrustedTLS(HTTPAdapter):
    """An adapter whose connections verify certificates with ``context`` instead of a bundle path."""

    def __init__(self, context: ssl.SSLContext):
        self._context = context
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, ssl_context=self._context, **kwargs)

    def proxy_manager_for(self, proxy, **kwargs):
        return super().proxy_manager_for(proxy, ssl_context=self._context, **kwargs)

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host, pool = super().build_connection_pool_key_attributes(request, True, cert)
        pool["ssl_context"] = self._context
        return host, pool

    def cert_verify(self, conn, url, verify, cert):
        super().cert_verify(conn, url, True, cert)
        conn.ca_certs = conn.ca_cert_dir = None  # the context holds them: no per-connection load


def _wire_headers(reply: requests.Response):
    """Headers as received, repeated names kept (requests folds them into one value)."""
    raw = getattr(reply.raw, "headers", None)
    if raw is not None and hasattr(raw, "items"):
        return raw.items()
    return reply.headers.items()


def _remaining(deadline: float, url: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchError("timeout", f"deadline passed before requesting {url}")
    return left


# tor's SOCKS5 replies for a failed onion service connection on an ExtendedErrors port (proposal 304)
ONION_SOCKS_REPLIES = {
    0xF0: "onion service descriptor can not be found",
    0xF1: "onion service descriptor is invalid",
    0xF2: "onion service introduction failed",
    0xF3: "onion service rendezvous failed",
    0xF4: "onion service missing client authorization",
    0xF5: "onion service wrong client authorization",
    0xF6: "onion service address is invalid",
    0xF7: "onion service introduction timed out",
}
# PySocks words a refused SOCKS5 request "0x04: Host unreachable" at the end of urllib3's long message
_SOCKS_REPLY = re.compile(r"\b0x([0-9a-f]{2}): ([A-Za-z][A-Za-z ]*)")


def _short(exc: Exception) -> str:
    """The error's text in at most 200 characters; when tor refused the stream, its SOCKS5 reply."""
    text = str(exc)
    if reply := _SOCKS_REPLY.search(text):
        code = int(reply.group(1), 16)
        return f"tor answered SOCKS5 reply {code:#04x}: {ONION_SOCKS_REPLIES.get(code, reply.group(2))}"
    return text if len(text) <= 200 else text[:197] + "..."


def pin_addresses(adapter: HTTPAdapter, resolve: dict[str, str]) -> None:
    """Make ``adapter``'s connections dial ``resolve[host]`` but keep ``host`` for Host, SNI and verification."""

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

    adapter.poolmanager.pool_classes_by_scheme = {"http": PinnedHTTPPool, "https": PinnedHTTPSPool}
