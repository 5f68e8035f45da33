"""The ``firefox`` fetcher: Debian's Firefox ESR through the lane's SocksPort.

What a person with a stock Firefox configured for tor's SOCKS proxy meets
behind an exit; geckodriver must be on PATH (Debian ships none).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from selenium.webdriver.firefox.firefox_profile import FirefoxProfile
from selenium.webdriver.firefox.options import Options
from selenium.webdriver.firefox.webdriver import WebDriver

from exporter.fetch.gecko import (
    SYSTEM_ACCESS_ARGUMENT,
    GeckoFetcher,
    browser_prefs,
    driver_service,
)
from exporter.values import Lane


def firefox_options(binary: str | None, headless: bool, lane: Lane, profile: FirefoxProfile | None,
                    prefs: Mapping[str, object] = MappingProxyType({}), arguments: tuple[str, ...] = (),
                    resolve: dict[str, str] | None = None) -> Options:
    """Options for one Firefox proxied through ``lane`` (or direct), with BiDi for the network events;
    a variant's ``prefs`` and ``arguments`` come last."""
    options = Options()
    options.binary_location = binary or shutil.which("firefox-esr") or shutil.which("firefox") or "firefox"
    if headless:
        options.add_argument("-headless")
    options.enable_bidi = True
    options.add_argument(SYSTEM_ACCESS_ARGUMENT)
    for argument in arguments:
        options.add_argument(argument)
    if profile is not None:
        options.profile = profile
    for name, value in {**browser_prefs(lane, resolve), **prefs}.items():
        options.set_preference(name, value)
    return options


class FirefoxFetcher(GeckoFetcher):
    """``fetch(url, lane, timeout)`` with a warm Firefox ESR per lane."""

    name = "firefox"

    def _start_driver(self, lane: Lane, home: Path, profile: FirefoxProfile | None) -> WebDriver:
        cfg = self._cfg
        options = firefox_options(cfg.binary, cfg.headless, lane, profile, cfg.prefs, cfg.arguments, self._resolve)
        service = driver_service(self._cfg.driver, dict(os.environ, TMPDIR=str(home)))
        return WebDriver(options=options, service=service)
