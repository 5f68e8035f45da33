"""The ``tor-browser`` fetcher: Tor Browser, through our own tor, at a chosen security level.

Tor Browser is driven with tbselenium in its running-tor mode, pointed at the
lane's SocksPort.  Facts behind the code:

- the bundled tor is not started (``TOR_SKIP_LAUNCH``), and ``TOR_PROVIDER=none``
  makes the browser a plain SOCKS client that never talks to a control port:
  the exporter owns the circuits (it attaches every stream itself), and the
  browser's New Identity or circuit display would otherwise signal our tor;
- the security level is the pref ``browser.security_level.security_slider``
  (4 standard, 2 safer, 1 safest); changing it in a running browser marks it
  custom and needs a restart (since 15.0 the browser restarts itself, losing
  the WebDriver session), so it is preset in the profile;
- the browser loads its bundled libraries and fonts through ``LD_LIBRARY_PATH``,
  ``FONTCONFIG_*`` and a working directory of ``Browser/`` (what its start
  script sets up).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from selenium.webdriver.firefox.firefox_profile import FirefoxProfile
from selenium.webdriver.firefox.options import Options
from selenium.webdriver.firefox.service import Service
from selenium.webdriver.firefox.webdriver import WebDriver
from tbselenium import common as tbb
from tbselenium.tbdriver import TorBrowserDriver

from exporter.config import TorBrowserConfig
from exporter.fetch.gecko import (
    SYSTEM_ACCESS_ARGUMENT,
    GeckoFetcher,
    browser_prefs,
    driver_service,
)
from exporter.values import Lane

SECURITY_SLIDER = {"standard": 4, "safer": 2, "safest": 1}

# Variables that would point the browser at another tor than the lane's SocksPort.
TOR_ENDPOINT_VARIABLES = ("TOR_SOCKS_HOST", "TOR_SOCKS_PORT", "TOR_SOCKS_IPC_PATH", "TOR_TRANSPROXY",
                          "TOR_CONTROL_HOST", "TOR_CONTROL_PORT", "TOR_CONTROL_IPC_PATH")


def fetcher_label(security_level: str) -> str:
    """The ``fetcher`` label value: one per security level, so three at most."""
    if security_level not in SECURITY_SLIDER:
        raise ValueError(f"unknown Tor Browser security level {security_level!r}")
    return f"tor-browser-{security_level}"


def security_level_prefs(security_level: str) -> dict[str, object]:
    return {
        "browser.security_level.security_slider": SECURITY_SLIDER[security_level],
        "browser.security_level.security_custom": False,
    }


def tor_browser_prefs(lane: Lane, security_level: str) -> dict[str, object]:
    return {**browser_prefs(lane), **security_level_prefs(security_level)}


def tor_browser_env(tbb_path: Path, home: Path, base: Mapping[str, str]) -> dict[str, str]:
    """The environment of geckodriver (and so the browser): ``base`` plus what tbselenium would
    export process-wide, with temporary files in ``home`` and the bundled tor left alone."""
    browser_dir = tbb_path / tbb.DEFAULT_TBB_BROWSER_DIR
    env = {name: value for name, value in base.items() if name not in TOR_ENDPOINT_VARIABLES}
    env.update(
        LD_LIBRARY_PATH=str(tbb_path / tbb.DEFAULT_TOR_BINARY_DIR),
        FONTCONFIG_PATH=str(tbb_path / tbb.DEFAULT_FONTCONFIG_PATH),
        FONTCONFIG_FILE=tbb.FONTCONFIG_FILE,
        HOME=str(browser_dir),
        PATH=os.pathsep.join(filter(None, (str(browser_dir), base.get("PATH")))),
        TMPDIR=str(home),
        TOR_SKIP_LAUNCH="1",
        TOR_PROVIDER="none",
    )
    return env


class RunningTorBrowserDriver(TorBrowserDriver):
    """tbselenium's driver in running-tor mode, without its process-wide side effects.

    tbselenium's own constructor exports ``LD_LIBRARY_PATH``, ``HOME`` and
    ``PATH`` into ``os.environ`` and ``chdir``s into ``Browser/``; in the
    threaded exporter that would leak into every other browser it starts and
    every relative path it opens.  Here the same environment and working
    directory go to geckodriver only, through ``service``.  The prefs are
    tbselenium's (``init_prefs``: running tor, no update checks, quick start)
    with ``prefs`` applied last; ``init_ports`` checks the SocksPort listens.
    """

    def __init__(self, tbb_path: Path, socks_port: int, profile: FirefoxProfile, prefs: dict[str, object],
                 headless: bool, service: Service):
        self.use_custom_profile = False
        self.tor_cfg = tbb.USE_RUNNING_TOR
        self.tbb_path = str(tbb_path)
        self.tbb_browser_dir = str(tbb_path / tbb.DEFAULT_TBB_BROWSER_DIR)
        self.tbb_fx_binary_path = str(tbb_path / tbb.DEFAULT_TBB_FX_BINARY_PATH)
        self.options = Options()
        self.options.profile = profile
        self.options.binary_location = self.tbb_fx_binary_path
        self.options.enable_bidi = True
        self.options.add_argument(SYSTEM_ACCESS_ARGUMENT)
        if headless:
            self.options.add_argument("-headless")
        self.init_ports(tbb.USE_RUNNING_TOR, socks_port, None)
        self.init_prefs(prefs, "")
        WebDriver.__init__(self, options=self.options, service=service)
        self.is_running = True
        self.temp_profile_dir = self.capabilities["moz:profile"]


class TorBrowserFetcher(GeckoFetcher):
    """``fetch(url, lane, timeout)`` with a warm Tor Browser per lane at ``security_level``."""

    def __init__(self, cfg: TorBrowserConfig, classify):
        if cfg.tbb_path is None:
            raise ValueError("the tor-browser fetcher needs tbb_path: the folder that holds Browser/")
        if not (cfg.tbb_path / tbb.DEFAULT_TBB_FX_BINARY_PATH).is_file():
            raise ValueError(f"{cfg.tbb_path} holds no {tbb.DEFAULT_TBB_FX_BINARY_PATH}: not a Tor Browser")
        self.name = fetcher_label(cfg.security_level)
        super().__init__(cfg, classify)

    def _needs_shared(self) -> bool:
        return True  # Tor Browser's own profile.default carries its extensions and settings

    def _fill_profile(self, directory: Path) -> None:
        shutil.copytree(self._cfg.tbb_path / tbb.DEFAULT_TBB_PROFILE_PATH, directory)

    def _start_driver(self, lane: Lane, home: Path, profile: FirefoxProfile | None) -> WebDriver:
        tbb_path = self._cfg.tbb_path
        service = driver_service(self._cfg.driver, tor_browser_env(tbb_path, home, os.environ),
                                 cwd=tbb_path / tbb.DEFAULT_TBB_BROWSER_DIR)
        return RunningTorBrowserDriver(tbb_path, lane.socks_port, profile,
                                       tor_browser_prefs(lane, self._cfg.security_level), self._cfg.headless, service)
