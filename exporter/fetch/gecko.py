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
import threading
import time
from collections.abc import Callable
from pathlib import Path

from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.common.bidi.common import command_builder
from selenium.webdriver.firefox.firefox_profile import FirefoxProfile
from selenium.webdriver.firefox.service import Service
from selenium.webdriver.firefox.webdriver import WebDriver

from exporter.config import BrowserFetcherConfig
from exporter.fetch import browser_pool
from exporter.fetch.bidilog import EVENTS, BidiLog
from exporter.fetch.browser_pool import BrowserPool
from exporter.fetch.chromium import trusted_nss_db
from exporter.fetch.outcome import settle
from exporter.fetch.timing import NAVIGATION_TIMING_JS, browser_result
from exporter.values import FetchError, FetchResult, Lane, Response, Verdict

log = logging.getLogger(__name__)

# How long after a navigation returns its BiDi events may still be on their way.
EVENT_GRACE_SECONDS = 2.0


def proxy_prefs(lane: Lane) -> dict[str, object]:
    """Everything through the lane's SocksPort, names resolved by tor, loopback included."""
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


def browser_prefs(lane: Lane) -> dict[str, object]:
    return {**QUIET_PREFS, **proxy_prefs(lane)}


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
    for fragment, reason in NET_ERROR_REASONS:
        if fragment in error_text:
            return reason
    return "connection"


def driver_service(driver_path: str | None, env: dict[str, str], cwd: Path | None = None) -> Service:
    """A geckodriver service leading a session of its own (see the module docstring)."""
    path = driver_path or shutil.which("geckodriver")
    if path is None:
        raise FetchError("browser", "geckodriver is not on PATH (and no driver: is configured)")
    popen_kw = {"start_new_session": True, **({"cwd": str(cwd)} if cwd else {})}
    return Service(path, log_output=subprocess.DEVNULL, env=env, popen_kw=popen_kw)


class GeckoBrowser:
    """One geckodriver and its browser, proxied through one lane."""

    def __init__(self, lane: Lane, home: Path, start: Callable[[], WebDriver]):
        """``start`` launches the driver; it runs with ``home`` as the private directory."""
        self.lane = lane
        self.probes = 0
        self.home = home
        self.driver: WebDriver | None = None
        try:
            self.driver = start()
            self.tab = self.driver.current_window_handle
            self.events = BidiLog(self.tab)
            self._subscribe()
        except Exception as exc:
            self.kill()
            if isinstance(exc, FetchError):
                raise
            raise FetchError("browser", f"the browser did not start: {getattr(exc, 'msg', None) or exc}") from exc

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

    def alive(self) -> bool:
        """geckodriver runs and so does a browser process in its session."""
        process = self._process
        if process is None or process.poll() is not None:
            return False
        return any(pid != process.pid for pid in browser_pool.live_processes(process.pid, str(self.home)))

    def resident_bytes(self) -> int:
        process = self._process
        session = process.pid if process is not None else -1
        return browser_pool.resident_bytes(browser_pool.live_processes(session, str(self.home)))

    def kill(self) -> None:
        process = self._process
        browser_pool.kill_tree(process.pid if process is not None else -1, str(self.home))
        if process is not None:
            process.wait()
        shutil.rmtree(self.home, ignore_errors=True)

    def screenshot(self) -> bytes | None:
        try:
            return self.driver.get_screenshot_as_png()
        except WebDriverException:
            return None

    def probe(self, url: str, timeout: float, classify: Callable[[Response], Verdict], challenge_wait: float) -> FetchResult:
        """Load ``url`` in a wiped browser and follow any challenge to its outcome."""
        self.probes += 1
        self._wipe()
        driver = self.driver
        driver.set_page_load_timeout(timeout)
        self.events.clear()
        started = time.monotonic()
        try:
            driver.get(url)
        except TimeoutException as exc:
            raise FetchError("timeout", f"page did not load within {timeout:g} s") from exc
        except WebDriverException as exc:
            if "Reached error page" not in (exc.msg or ""):
                raise
            failure = _wait_for(self.events.failure)
            error = failure.error if failure is not None else exc.msg
            raise FetchError(net_error_reason(f"{error} {exc.msg}"), f"{url}: {error}") from exc
        documents = _wait_for(self.events.documents)
        if not documents:
            raise FetchError("browser", f"no document response for {url} among the BiDi events")
        landing_doc = next((doc for doc in documents if not doc.is_redirect), documents[-1])
        landing_timing = driver.execute_script(NAVIGATION_TIMING_JS) or {}
        landing = Response(landing_doc.url, landing_doc.status, landing_doc.headers, driver.page_source)

        def read_page() -> Response:
            # the page first: a reloaded document's response event precedes its DOM
            body, url = driver.page_source, driver.current_url
            latest = [doc for doc in self.events.documents() if not doc.is_redirect][-1]
            return Response(url, latest.status, latest.headers, body)

        outcome = settle(landing, read_page, classify, challenge_wait, lambda: time.monotonic() - started)
        redirects = tuple(doc.url for doc in documents if doc.is_redirect)
        return browser_result(landing, redirects, landing_timing, outcome,
                              lambda: driver.execute_script(NAVIGATION_TIMING_JS) or {})

    def _wipe(self) -> None:
        """Leave no connection, cookie, cache entry or site data from the previous probe."""
        driver = self.driver
        for handle in driver.window_handles:
            if handle != self.tab:  # pop-ups the last page opened
                driver.switch_to.window(handle)
                driver.close()
        driver.switch_to.window(self.tab)
        driver.get("about:blank")
        with driver.context(driver.CONTEXT_CHROME):
            failed = driver.execute_async_script(WIPE_SCRIPT)
        if failed:
            log.warning("the browser of lane %d could not clear data of kinds %#x", self.lane.index, failed)


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


class GeckoFetcher:
    """``fetch(url, lane, timeout)`` with a warm Firefox-family browser per lane.

    Subclasses say how a browser starts: ``_start_driver(lane, home, profile)``.
    """

    name = "gecko"

    def __init__(self, cfg: BrowserFetcherConfig, classify: Callable[[Response], Verdict]):
        self._cfg = cfg
        self._classify = classify
        self._profile: FirefoxProfile | None = None
        self._profile_dir: Path | None = None
        self._profile_lock = threading.Lock()
        self._pool = BrowserPool(self._launch, cfg.recycle_after, cfg.memory_limit_bytes, self.name)

    @property
    def pool(self) -> BrowserPool:
        return self._pool

    def fetch(self, url: str, lane: Lane, timeout: float) -> FetchResult:
        return self._pool.probe(lane, url, timeout, self._classify, self._cfg.challenge_wait)

    def screenshot(self, lane: Lane) -> bytes | None:
        """PNG of the lane's page now: call it right after ``fetch`` on the same lane."""
        return self._pool.screenshot(lane)

    def close(self) -> None:
        self._pool.close()
        if self._profile_dir is not None:
            shutil.rmtree(self._profile_dir, ignore_errors=True)

    def _launch(self, lane: Lane) -> GeckoBrowser:
        profile = self._shared_profile()
        home = Path(tempfile.mkdtemp(prefix=f"captcha-{self.name}-"))
        return GeckoBrowser(lane, home, lambda: self._start_driver(lane, home, profile))

    def _shared_profile(self) -> FirefoxProfile | None:
        """The profile every browser of this fetcher starts from (made once), or None."""
        with self._profile_lock:
            if self._profile is None and self._needs_profile():
                self._profile_dir = Path(tempfile.mkdtemp(prefix=f"captcha-{self.name}-profile-"))
                directory = self._profile_dir / "profile"
                self._fill_profile(directory)
                if self._cfg.ca_file is not None:
                    trusted_nss_db(self._cfg.ca_file, directory)
                self._profile = FirefoxProfile(str(directory))
        return self._profile

    def _needs_profile(self) -> bool:
        return self._cfg.ca_file is not None

    def _fill_profile(self, directory: Path) -> None:
        """Put the profile's starting files in ``directory`` (the NSS database comes after)."""
        directory.mkdir(parents=True)

    def _start_driver(self, lane: Lane, home: Path, profile: FirefoxProfile | None) -> WebDriver:
        raise NotImplementedError
