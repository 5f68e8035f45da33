"""Warm, exit-pinned Firefox-family browsers (Firefox ESR, Tor Browser), driven by geckodriver.

Shared by the ``firefox`` and ``tor-browser`` fetchers; they differ only in how
the browser is started.  Facts behind the code:

- every request goes to the lane's SocksPort with names resolved by tor
  (``socks_remote_dns``); Firefox would send loopback hosts around the proxy
  unless ``network.proxy.allow_hijacking_localhost`` is set;
- the first document response comes from WebDriver BiDi
  (``network.responseStarted``, see ``bidilog``), for which the session asks
  for a ``webSocketUrl``;
- between probes the caller re-pins the lane to another exit, so each probe
  first wipes the browser the way Tor Browser's New Identity does, in chrome
  context: cache, cookies, every site's data, HTTP auth, TLS sessions, and the
  keep-alive connections (``net:prune-all-connections``), which would still run
  over the previous exit's circuit;
- Firefox trusts the certificates of its profile's NSS database, so a
  ``ca_file`` goes into the ``cert9.db`` of the profile every browser starts from;
- geckodriver starts as the leader of a new session with ``TMPDIR`` set to the
  browser's private directory, so the browser (its child) shares the session
  and its profile copy lives in that directory, which names it on its command line.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.bidi.common import command_builder
from selenium.webdriver.firefox.firefox_profile import FirefoxProfile
from selenium.webdriver.firefox.service import Service
from selenium.webdriver.firefox.webdriver import WebDriver

from exporter.config import BrowserFetcherConfig
from exporter.fetch.bidilog import EVENTS, BidiLog
from exporter.fetch.browser import (
    BrowserFetcher,
    BrowserSession,
    error_reason,
    trusted_nss_db,
)
from exporter.fetch.perflog import DocumentResponse
from exporter.values import FetchError, Lane, Response, Verdict

log = logging.getLogger(__name__)

# How long after a navigation returns its BiDi events may still be on their way.
EVENT_GRACE_SECONDS = 2.0


def proxy_prefs(lane: Lane, resolve: dict[str, str] | None = None) -> dict[str, object]:
    """Everything through the lane's SocksPort, names resolved by tor, loopback included; on the direct
    lane no proxy, and ``resolve``'s names answered with their address (Firefox can force one address
    for every name, ``network.dns.forceResolve``, so they must all map to one)."""
    if lane.direct:
        addresses = set((resolve or {}).values())
        if len(addresses) > 1:
            raise FetchError("browser", "a Firefox-family browser without a proxy can pin every host name to one "
                                        f"address only, and baseline.resolve names {len(addresses)}")
        return {"network.proxy.type": 0, "network.http.http3.enable": False,
                **({"network.dns.forceResolve": addresses.pop()} if addresses else {})}
    return {
        "network.proxy.type": 1,  # manual
        "network.proxy.socks": lane.socks_host,
        "network.proxy.socks_port": lane.socks_port,
        "network.proxy.socks_version": 5,
        "network.proxy.socks_remote_dns": True,
        "network.proxy.no_proxies_on": "",
        "network.proxy.allow_hijacking_localhost": True,
        "network.dns.disabled": True,  # no name lookup outside the proxy
        "network.http.http3.enable": False,  # QUIC is UDP, which SOCKS through tor cannot carry
    }


# Prefs both browsers get besides the proxy: the browser's own traffic switched off at the source
# (every stream of a lane goes through the probed exit; README "What leaves the exporter" lists
# these), and the target's URL loaded as configured (HTTPS-Only would turn a plain-http target into
# an upgrade attempt or an interstitial).
QUIET_PREFS: dict[str, object] = {
    # updates: the browser, add-ons, system add-ons, media plugins (OpenH264, Widevine), search engines
    "app.update.auto": False,
    "app.update.enabled": False,
    "app.update.disabledForTesting": True,
    "extensions.update.enabled": False,
    "extensions.systemAddon.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.blocklist.enabled": False,
    "media.gmp-manager.updateEnabled": False,
    "browser.search.update": False,
    # remote settings (and what it feeds: CRLite, intermediates, region), studies
    "services.settings.server": "data:,#remote-settings-dummy/v1",
    "security.remote_settings.crlite_filters.enabled": False,
    "security.remote_settings.intermediates.enabled": False,
    "browser.region.network.url": "",
    "browser.region.update.enabled": False,
    "app.normandy.enabled": False,
    "app.shield.optoutstudies.enabled": False,
    # telemetry and health reports
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.archive.enabled": False,
    "toolkit.telemetry.server": "data:,",
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "browser.ping-centre.telemetry": False,
    # captive-portal and connectivity checks
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    # safe browsing list updates and lookups
    "browser.safebrowsing.update.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.remote.enabled": False,
    # DNS over HTTPS off by choice (names are resolved by the exit), no speculative connections
    "network.trr.mode": 5,
    "network.http.speculative-parallel-limit": 0,
    # new-tab and start pages that fetch content
    "browser.newtabpage.enabled": False,
    "browser.topsites.contile.enabled": False,
    "identity.fxaccounts.enabled": False,
    "browser.startup.page": 0,
    "browser.startup.homepage": "about:blank",
    "browser.startup.homepage_override.mstone": "ignore",
    "dom.security.https_only_mode": False,
    "dom.security.https_only_mode_pbm": False,
}


# Recent Firefox (measured: ESR 153) refuses chrome-context scripts, so the wipe, unless started
# with this flag; Firefox ignores flags it does not know.
SYSTEM_ACCESS_ARGUMENT = "-remote-allow-system-access"


def browser_prefs(lane: Lane, resolve: dict[str, str] | None = None) -> dict[str, object]:
    return {**QUIET_PREFS, **proxy_prefs(lane, resolve)}


# Chrome-context script (Marionette runs it in the browser window, where Services, Cc and Ci are
# globals); the last argument is the async callback.  The same steps as New Identity.
WIPE_SCRIPT = """
const done = arguments[arguments.length - 1];
Services.cache2.clear();
Services.cookies.removeAll();
Cc["@mozilla.org/network/http-auth-manager;1"].getService(Ci.nsIHttpAuthManager).clearAll();
Cc["@mozilla.org/security/sdr;1"].getService(Ci.nsISecretDecoderRing).logoutAndTeardown();
Services.obs.notifyObservers(null, "net:prune-all-connections");
Services.clearData.deleteData(Ci.nsIClearDataService.CLEAR_ALL, {
  onDataDeleted(failedFlags) { done(failedFlags); },
});
"""

# Fragments of Firefox's error text (BiDi errorText, or the about:neterror ``e=`` code that
# geckodriver reports as "Reached error page") → FetchError reason.  Through a SOCKS proxy the
# browser never connects to the site itself, so these come from tor's SOCKS5 reply; Firefox reports
# replies 1, 2, 3, 5 and 7 as NS_ERROR_CONNECTION_REFUSED, 4 and 8 as NS_ERROR_UNKNOWN_HOST and
# 6 (TTL expired) as NS_ERROR_NET_TIMEOUT (measured with Firefox ESR 153).  Chromium's fetcher
# counts the same replies as ``circuit``.  Anything else (tor's SocksPort itself unreachable, a
# reset mid-response) is ``connection``.
NET_ERROR_REASONS = (
    ("NS_ERROR_NET_TIMEOUT", "timeout"),
    ("e=netTimeout", "timeout"),
    ("NS_ERROR_CONNECTION_REFUSED", "circuit"),
    ("e=connectionFailure", "circuit"),
    ("NS_ERROR_UNKNOWN_HOST", "circuit"),
    ("e=dnsNotFound", "circuit"),
    ("SEC_ERROR_", "tls"),
    ("SSL_ERROR_", "tls"),
    ("MOZILLA_PKIX_ERROR_", "tls"),
    ("e=nssFailure", "tls"),
    ("about:certerror", "tls"),
)


def net_error_reason(error_text: str) -> str:
    """The FetchError reason for a Firefox network error text."""
    return error_reason(error_text, NET_ERROR_REASONS)


def driver_service(driver_path: str | None, env: dict[str, str], cwd: Path | None = None) -> Service:
    """A geckodriver service leading a session of its own (see the module docstring)."""
    path = driver_path or shutil.which("geckodriver")
    if path is None:
        raise FetchError("browser", "geckodriver is not on PATH (and no driver: is configured)")
    popen_kw = {"start_new_session": True, **({"cwd": str(cwd)} if cwd else {})}
    return Service(path, log_output=subprocess.DEVNULL, env=env, popen_kw=popen_kw)


class GeckoBrowser(BrowserSession):
    """One geckodriver and its browser, proxied through one lane."""

    documents_from = "the BiDi events"

    def __init__(self, lane: Lane, home: Path, start: Callable[[], WebDriver]):
        """``start`` launches the driver; it runs with ``home`` as the private directory."""
        super().__init__(lane, home)

        def run() -> None:
            self.driver = start()
            self.tab = self.driver.current_window_handle
            self.events = BidiLog(self.tab)
            self._subscribe()

        self._start_or_clean_up(run, "the browser")

    def _subscribe(self) -> None:
        """Collect the BiDi network events of the session (selenium 4.39 has no public API for
        passive response events; its websocket connection dispatches any method to callbacks)."""
        self.driver.script  # noqa: B018 - opens the BiDi websocket
        connection = self.driver._websocket_connection
        for method in EVENTS:
            connection.add_callback(_event_type(method), lambda params, m=method: self.events.add(m, params))
        connection.execute(command_builder("session.subscribe", {"events": list(EVENTS)}))

    @property
    def _process(self):
        return self.driver.service.process if self.driver is not None else None

    def _browser_runs(self, driver_pid: int) -> bool:
        return any(pid != driver_pid for pid in self._live_processes())

    def _start_recording(self) -> None:
        self.events.clear()

    def _navigation_error(self, url: str, error: WebDriverException) -> FetchError | None:
        if "Reached error page" not in (error.msg or ""):
            return None
        failure = _wait_for(self.events.failure)
        text = failure.error if failure is not None else error.msg
        return FetchError(net_error_reason(f"{text} {error.msg}"), f"{url}: {text}")

    def _documents(self, url: str) -> list[DocumentResponse]:
        return _wait_for(self.events.documents)

    def _read_page(self) -> Response:
        # the page first: a reloaded document's response event precedes its DOM
        body, url = self.driver.page_source, self.driver.current_url
        latest = [doc for doc in self.events.documents() if not doc.is_redirect][-1]
        return Response(url, latest.status, latest.headers, body)

    def _clear(self) -> None:
        driver = self.driver
        driver.get("about:blank")
        with driver.context(driver.CONTEXT_CHROME):
            failed = driver.execute_async_script(WIPE_SCRIPT)
        if failed:
            log.warning("the browser could not clear some kinds of data",
                        extra={"lane": self.lane.index, "failed_flags": f"{failed:#x}"})


def _event_type(method: str) -> type:
    """The shape selenium's websocket connection wants for a callback: ``event_class`` names the
    BiDi method and ``from_json`` turns its params into what the callback receives."""
    return type("BidiEvent", (), {"event_class": method, "from_json": staticmethod(lambda params: params)})


def _wait_for(read: Callable, seconds: float = EVENT_GRACE_SECONDS):
    """``read()`` once it returns something truthy, or its last value after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not (value := read()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


class GeckoFetcher(BrowserFetcher):
    """``fetch(url, lane, timeout)`` with a warm Firefox-family browser per lane.

    Subclasses say how a browser starts: ``_start_driver(lane, home, profile)``.
    """

    name = "gecko"

    def __init__(self, cfg: BrowserFetcherConfig, classify: Callable[[Response], Verdict],
                 resolve: dict[str, str] | None = None, label: str | None = None):
        super().__init__(cfg, classify, resolve, label)
        self._profile: FirefoxProfile | None = None

    def _launch(self, lane: Lane) -> GeckoBrowser:
        profile = self._shared_profile()
        home = Path(tempfile.mkdtemp(prefix=self.home_prefix))
        return GeckoBrowser(lane, home, lambda: self._start_driver(lane, home, profile))

    def _shared_profile(self) -> FirefoxProfile | None:
        """The profile every browser of this fetcher starts from (made once), or None."""
        self._shared_files()
        return self._profile

    def _make_shared(self, directory: Path) -> None:
        profile = directory / "profile"
        self._fill_profile(profile)
        if self._cfg.ca_file is not None:
            trusted_nss_db(self._cfg.ca_file, profile)
        self._profile = FirefoxProfile(str(profile))

    def _fill_profile(self, directory: Path) -> None:
        """Put the profile's starting files in ``directory`` (the NSS database comes after)."""
        directory.mkdir(parents=True)

    def _start_driver(self, lane: Lane, home: Path, profile: FirefoxProfile | None) -> WebDriver:
        raise NotImplementedError
