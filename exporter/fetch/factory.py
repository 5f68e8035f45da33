"""Build a fetcher by kind name from the ``fetchers:`` config."""

from __future__ import annotations

from exporter.config import Fetchers
from exporter.fetch.http import HttpFetcher
from exporter.fetch.response import Fetcher


def make_fetcher(kind: str, config: Fetchers, classify) -> tuple[Fetcher, float]:
    """The fetcher of ``kind`` and its timeout. Browsers start lazily, on their first fetch."""
    if kind == "http":
        return HttpFetcher(config.http), config.http.timeout
    if kind == "chromium":
        from exporter.fetch.chromium import ChromiumFetcher

        return ChromiumFetcher(config.chromium, classify), config.chromium.timeout
    raise ValueError(f"fetcher {kind!r} is not available in this build")
