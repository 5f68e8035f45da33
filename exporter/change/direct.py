"""Fetching a target without tor, for the baseline: the page the site serves to everyone.

The request is the HTTP fetcher's on the direct lane (same headers, body cap,
deadline, error reasons, ``resolve`` pinning, and redirects followed as a
probe follows them: the baseline must be the page a probe ends on, not an
apex's redirect).
"""

from __future__ import annotations

from exporter.config import HttpFetcherConfig
from exporter.fetch.http import HttpFetcher
from exporter.values import DIRECT_LANE, Response


def fetch_direct(url: str, config: HttpFetcherConfig, resolve: dict[str, str] | None = None) -> Response:
    """The page ``url`` leads to, straight from this machine; raises FetchError."""
    return HttpFetcher(config, resolve).fetch(url, DIRECT_LANE, config.timeout).first
