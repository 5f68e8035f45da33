"""Fetching a target without tor, for the baseline: the page the site serves to everyone.

The request is the HTTP fetcher's on the direct lane (same headers, body cap,
deadline, error reasons and ``resolve`` pinning); only one GET is made:
redirects are not followed.
"""

from __future__ import annotations

import time

from exporter.config import HttpFetcherConfig
from exporter.fetch.http import HttpFetcher
from exporter.values import DIRECT_LANE, Response


def fetch_direct(url: str, config: HttpFetcherConfig, resolve: dict[str, str] | None = None) -> Response:
    """One GET of ``url`` straight from this machine (redirects are not followed); raises FetchError."""
    fetcher = HttpFetcher(config, resolve)
    with fetcher.session(DIRECT_LANE) as session:
        response, _ = fetcher._get(session, url, time.monotonic() + config.timeout)
    return response
