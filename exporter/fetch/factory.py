"""Build a fetcher by kind name from the ``fetchers:`` config."""

from __future__ import annotations

from exporter.config import Fetchers
from exporter.fetch.http import HttpFetcher
from exporter.values import Fetcher


def make_fetcher(kind: str, config: Fetchers, classify) -> tuple[Fetcher, float]:
    """The fetcher of ``kind`` and its timeout. Browsers start lazily, on their first fetch."""
    if kind == "http":
        return HttpFetcher(config.http), config.http.timeout
    if kind == "chromium":
        from exporter.fetch.chromium import ChromiumFetcher

        return ChromiumFetcher(config.chromium, classify), config.chromium.timeout
    if kind == "firefox":
        from exporter.fetch.firefox import FirefoxFetcher

        return FirefoxFetcher(config.firefox, classify), config.firefox.timeout
    if kind == "tor-browser":
        from exporter.fetch.tor_browser import TorBrowserFetcher

        return TorBrowserFetcher(config.tor_browser, classify), config.tor_browser.timeout
    raise ValueError(f"unknown fetcher kind {kind!r}")


def fetcher_label(kind: str, config: Fetchers) -> str:
    """The ``fetcher`` label of a kind: Tor Browser's carries its security level (three values at most)."""
    if kind == "tor-browser":
        return f"tor-browser-{config.tor_browser.security_level}"
    return kind
