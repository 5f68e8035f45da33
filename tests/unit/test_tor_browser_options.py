"""Tor Browser: label, security level, environment, and tbselenium's running-tor driver without side effects."""

import os
import socket
from pathlib import Path

import pytest
from selenium.webdriver.firefox.firefox_profile import FirefoxProfile
from selenium.webdriver.firefox.webdriver import WebDriver
from tbselenium.exceptions import TBDriverPortError

from exporter.config import TorBrowserConfig
from exporter.fetch.gecko import driver_service
from exporter.fetch.tor_browser import (
    RunningTorBrowserDriver,
    TorBrowserFetcher,
    fetcher_label,
    security_level_prefs,
    tor_browser_env,
    tor_browser_prefs,
)
from exporter.values import Lane
from testbed.tls import issue_certificates

LANE = Lane(0, "127.0.0.1", 19050, 1)


@pytest.fixture
def tbb(tmp_path) -> Path:
    """A stand-in Tor Browser folder with the layout tbselenium expects (no real binary)."""
    root = tmp_path / "tor-browser"
    profile = root / "Browser/TorBrowser/Data/Browser/profile.default"
    profile.mkdir(parents=True)
    (profile / "prefs.js").write_text('user_pref("torbrowser.migration.version", 1);\n')
    (root / "Browser/firefox").write_text("#!/bin/sh\n")
    return root


@pytest.fixture
def socks_port():
    """Something listening where the lane's SocksPort would be."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.parametrize("level, slider", [("standard", 4), ("safer", 2), ("safest", 1)])
def test_security_level_is_a_preset_slider_and_a_bounded_label(level, slider):
    assert security_level_prefs(level) == {
        "browser.security_level.security_slider": slider,
        "browser.security_level.security_custom": False,
    }
    assert fetcher_label(level) == f"tor-browser-{level}"


def test_unknown_security_level_is_refused():
    with pytest.raises(ValueError):
        fetcher_label("paranoid")


def test_prefs_combine_the_lane_proxy_and_the_security_level():
    prefs = tor_browser_prefs(LANE, "safest")
    assert prefs["network.proxy.socks_port"] == 19050 and prefs["network.proxy.allow_hijacking_localhost"] is True
    assert prefs["browser.security_level.security_slider"] == 1
    assert prefs["dom.security.https_only_mode"] is False


def test_environment_points_at_the_bundle_and_never_at_another_tor(tbb, tmp_path):
    base = {"PATH": "/usr/bin", "LANG": "C", "TOR_SOCKS_PORT": "9150", "TOR_CONTROL_PORT": "9151"}
    env = tor_browser_env(tbb, tmp_path / "home", base)
    assert env["LD_LIBRARY_PATH"] == str(tbb / "Browser/TorBrowser/Tor")
    assert env["FONTCONFIG_PATH"] == str(tbb / "Browser/TorBrowser/Data/fontconfig")
    assert env["FONTCONFIG_FILE"] == "fonts.conf"
    assert env["HOME"] == str(tbb / "Browser")
    assert env["PATH"] == f"{tbb / 'Browser'}:/usr/bin"
    assert env["TMPDIR"] == str(tmp_path / "home")
    assert env["TOR_SKIP_LAUNCH"] == "1" and env["TOR_PROVIDER"] == "none"
    assert "TOR_SOCKS_PORT" not in env and "TOR_CONTROL_PORT" not in env
    assert env["LANG"] == "C" and base["TOR_SOCKS_PORT"] == "9150"  # base left as it was


class Started(Exception):
    """Raised by the stand-in WebDriver.__init__ once it has seen what would be sent."""


def capture_start(monkeypatch) -> dict:
    seen = {}

    def fake_init(self, options, service):
        seen.update(options=options, service=service, cwd=os.getcwd(), environ=dict(os.environ))
        self.caps = {"moz:profile": "/tmp/rust_mozprofile"}

    monkeypatch.setattr(WebDriver, "__init__", fake_init)
    return seen


def test_running_tor_driver_has_tbselenium_prefs_then_ours_and_no_process_side_effects(tbb, socks_port, tmp_path,
                                                                                     monkeypatch):
    seen = capture_start(monkeypatch)
    cwd, environ = os.getcwd(), dict(os.environ)
    lane = Lane(0, "127.0.0.1", socks_port, 1)
    service = driver_service("/usr/local/bin/geckodriver", tor_browser_env(tbb, tmp_path, os.environ),
                             cwd=tbb / "Browser")
    profile = FirefoxProfile(str(tbb / "Browser/TorBrowser/Data/Browser/profile.default"))
    driver = RunningTorBrowserDriver(tbb, socks_port, profile, tor_browser_prefs(lane, "safer"), True, service)
    moz = seen["options"].to_capabilities()["moz:firefoxOptions"]
    prefs = moz["prefs"]
    assert prefs["extensions.torlauncher.start_tor"] is False  # tbselenium's running-tor mode
    assert prefs["app.update.enabled"] is False and prefs["extensions.torbutton.versioncheck_enabled"] is False
    assert prefs["network.proxy.socks_port"] == socks_port and prefs["network.proxy.socks"] == "127.0.0.1"
    assert prefs["browser.security_level.security_slider"] == 2
    assert moz["binary"] == str(tbb / "Browser/firefox") and "-headless" in moz["args"]
    assert "-remote-allow-system-access" in moz["args"]
    assert seen["options"].to_capabilities()["webSocketUrl"] is True
    assert seen["service"] is service and service.popen_kw["cwd"] == str(tbb / "Browser")
    assert seen["cwd"] == cwd == os.getcwd()
    assert seen["environ"] == environ == dict(os.environ)
    assert driver.temp_profile_dir == "/tmp/rust_mozprofile"


def test_running_tor_driver_refuses_a_lane_whose_socks_port_is_closed(tbb, tmp_path, monkeypatch):
    seen = capture_start(monkeypatch)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    service = driver_service("/usr/local/bin/geckodriver", {}, cwd=tbb / "Browser")
    with pytest.raises(TBDriverPortError):
        RunningTorBrowserDriver(tbb, closed, None, {}, True, service)
    assert seen == {}


def test_fetcher_needs_a_tor_browser_folder(tbb, tmp_path):
    with pytest.raises(ValueError, match="tbb_path"):
        TorBrowserFetcher(TorBrowserConfig(), classify=None)
    with pytest.raises(ValueError, match="not a Tor Browser"):
        TorBrowserFetcher(TorBrowserConfig(tbb_path=tmp_path / "empty"), classify=None)
    fetcher = TorBrowserFetcher(TorBrowserConfig(tbb_path=tbb, security_level="safest"), classify=None)
    assert fetcher.name == "tor-browser-safest"
    fetcher.close()


def test_every_browser_starts_from_a_copy_of_the_bundle_profile_that_trusts_the_ca(tbb, tmp_path):
    ca = issue_certificates(tmp_path / "certs", ["news.test"]).ca_file
    fetcher = TorBrowserFetcher(TorBrowserConfig(tbb_path=tbb, ca_file=ca), classify=None)
    try:
        profile = Path(fetcher._shared_profile().path)
        assert (profile / "prefs.js").read_text().startswith('user_pref("torbrowser.migration')
        assert (profile / "cert9.db").is_file()
        assert fetcher._shared_profile().path == str(profile)  # made once
    finally:
        fetcher.close()

