"""The plain HTTP fetcher: requests through a lane's SocksPort, names resolved by the exit.

``socks5h://`` makes the SOCKS client send the host name to tor, so the exit
resolves it (a local lookup would leak the target and could differ from
what the exit sees). Each fetch uses a fresh session: a kept-alive
connection would carry the next probe out through the previous exit.
"""

from __future__ import annotations

import time
from urllib.parse import urljoin

import requests

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

    def __init__(self, config: HttpFetcherConfig):
        self.config = config
        self.headers = {"User-Agent": config.user_agent, **BROWSER_HEADERS, **config.headers}

    def fetch(self, url: str, lane: Lane, timeout: float) -> FetchResult:
        deadline = time.monotonic() + timeout
        proxy = f"socks5h://{lane.socks_host}:{lane.socks_port}"
        started = time.monotonic()
        responses: list[Response] = []
        ttfb = None
        with requests.Session() as session:
            session.trust_env = False  # never let HTTP(S)_PROXY or NO_PROXY bypass tor
            session.proxies = {"http": proxy, "https": proxy}
            session.verify = str(self.config.ca_file) if self.config.ca_file else True
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


def _short(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:197] + "..."
