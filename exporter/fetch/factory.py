"""Build a fetcher by name (a kind, or a variant of one) from the ``fetchers:`` config."""

from __future__ import annotations

from exporter.config import Fetchers
from exporter.fetch.http import HttpFetcher
from exporter.values import Fetcher

# Settings that make a fetcher what it is (captcha_fetcher_info's `settings`); timeouts, limits and paths
# only say how it is run, and headers may carry secrets.
IDENTITY_SETTINGS = ("user_agent", "headless", "arguments", "prefs", "security_level", "binary")


def make_fetcher(name: str, config: Fetchers, classify, resolve: dict[str, str] | None = None) -> tuple[Fetcher, float]:
    """The fetcher ``name`` (labelled as ``config.label`` says) and its timeout; ``resolve`` pins host names
    for its fetches without Tor.  Browsers start lazily, on their first fetch."""
    kind, settings = config.resolve(name)
    label = config.label(name)
    if kind == "http":
        return HttpFetcher(settings, resolve, label), settings.timeout
    if kind == "chromium":
        from exporter.fetch.chromium import ChromiumFetcher

        return ChromiumFetcher(settings, classify, resolve, label), settings.timeout
    if kind == "firefox":
        from exporter.fetch.firefox import FirefoxFetcher

        return FirefoxFetcher(settings, classify, resolve, label), settings.timeout
    if kind == "tor-browser":
        from exporter.fetch.tor_browser import TorBrowserFetcher

        return TorBrowserFetcher(settings, classify, resolve, label), settings.timeout
    raise ValueError(f"unknown fetcher kind {kind!r}")


def settings_text(name: str, config: Fetchers) -> str:
    """The settings that make fetcher ``name`` what it is, ``key=value`` joined by ", " (prefs one per
    pref, ``prefs.NAME=VALUE``): those a variant changes, and Tor Browser's security level."""
    kind, settings = config.resolve(name)
    if name in config.variants:
        changed = config.variants[name].rendered
    else:
        changed = {"security_level": settings.security_level} if kind == "tor-browser" else {}
    parts = []
    for key in IDENTITY_SETTINGS:
        value = changed.get(key)
        if key == "prefs" and value:
            parts += [f"prefs.{pref}={_text(item)}" for pref, item in sorted(value.items())]
        elif key in changed:
            parts.append(f"{key}={_text(value)}")
    return ", ".join(parts)


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return " ".join(str(item) for item in value)
    return str(value)

