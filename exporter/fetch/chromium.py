"""Warm, exit-pinned Chromium: what a person with a real browser meets behind a Tor exit.

One headless Chromium per lane, driven by chromedriver through selenium, sends
everything to the lane's SocksPort (``--proxy-bypass-list=<-loopback>``: by
default Chromium would reach loopback hosts directly, around tor).  Between
probes the caller re-pins the lane to another exit, so each probe first drops
the browser's keep-alive connections (they would still run over the previous
exit's circuit) and wipes cookies, cache and storage (a clearance cookie earned
through one exit must not help the next).

Chromium on Linux trusts the certificates in ``$HOME/.pki/nssdb``; each browser
gets a private ``HOME`` whose NSS database trusts ``ca_file`` (made with
``certutil`` from Debian's ``libnss3-tools``).  The browser runs in its sandbox,
as an unprivileged user when we are root (see ``sandbox``), and that user owns the ``HOME``.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service

from exporter.config import BrowserFetcherConfig
from exporter.fetch import browser_pool, sandbox
from exporter.fetch.browser_pool import BrowserPool
from exporter.fetch.outcome import settle
from exporter.fetch.perflog import DocumentResponse, NetworkLog
from exporter.fetch.timing import NAVIGATION_TIMING_JS, browser_result
from exporter.values import FetchError, FetchResult, Lane, Response, Verdict

log = logging.getLogger(__name__)

CHROMIUM_ARGUMENTS = (
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-quic",  # QUIC is UDP, which SOCKS5 through tor cannot carry
    "--disable-dev-shm-usage",
    "--disable-features=BackForwardCache",  # a page left behind is unloaded, not kept (frozen) for Back
    "--enable-net-benchmarking",  # chrome.benchmarking (CLOSE_CONNECTIONS_JS)
    "--window-size=1280,900",
)

# chrome.benchmarking exists with --enable-net-benchmarking: drop every pooled
# connection (they run over the previous exit's circuit) and cached DNS answers.
CLOSE_CONNECTIONS_JS = (
    "if (!(window.chrome && chrome.benchmarking)) return false;"
    "chrome.benchmarking.closeConnections(); chrome.benchmarking.clearHostResolverCache(); return true;"
)

# net::ERR_… of a failed top-level document → FetchError reason.
NET_ERROR_REASONS = (
    ("ERR_TIMED_OUT", "timeout"),
    ("ERR_CONNECTION_TIMED_OUT", "timeout"),
    ("ERR_SOCKS_CONNECTION_FAILED", "circuit"),  # tor refused the stream (exit or circuit failed)
    ("ERR_SOCKS_CONNECTION_HOST_UNREACHABLE", "circuit"),
    ("ERR_CERT_", "tls"),
    ("ERR_SSL_", "tls"),
    ("ERR_BAD_SSL_", "tls"),
)


def net_error_reason(error_text: str) -> str:
    """The FetchError reason for a Chromium ``net::ERR_…`` text."""
    for fragment, reason in NET_ERROR_REASONS:
        if fragment in error_text:
            return reason
    return "connection"


def trusted_nss_db(ca_file: Path, directory: Path) -> Path:
    """Create an NSS database in ``directory`` that trusts ``ca_file`` for TLS servers."""
    if shutil.which("certutil") is None:
        raise FetchError("internal", "trusting ca_file needs certutil (Debian package libnss3-tools)")
    directory.mkdir(parents=True, exist_ok=True)
    db = f"sql:{directory}"
    for command in (
        ["certutil", "-N", "-d", db, "--empty-password"],
        ["certutil", "-A", "-d", db, "-n", "captcha-exporter-ca", "-t", "C,,", "-i", str(ca_file)],
    ):
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise FetchError("internal", f"{' '.join(command[:2])} failed: {done.stderr.strip()}")
    return directory


class ChromiumBrowser:
    """One chromedriver and its Chromium, in a session of their own, proxied through one lane."""

    def __init__(self, cfg: BrowserFetcherConfig, lane: Lane, nss_db: Path | None, launch: sandbox.Launch):
        self.lane = lane
        self.probes = 0
        self._origins: set[str] = set()
        self.home = Path(tempfile.mkdtemp(prefix="captcha-chromium-"))
        if nss_db is not None:
            shutil.copytree(nss_db, self.home / ".pki" / "nssdb")
        launch.give(self.home)
        options = webdriver.ChromeOptions()
        options.binary_location = cfg.binary or shutil.which("chromium") or "chromium"
        if cfg.headless:
            options.add_argument("--headless=new")
        for argument in launch.arguments + CHROMIUM_ARGUMENTS:
            options.add_argument(argument)
        options.add_argument(f"--proxy-server=socks5://{lane.socks_host}:{lane.socks_port}")
        options.add_argument("--proxy-bypass-list=<-loopback>")
        options.add_argument(f"--user-data-dir={self.home / 'profile'}")
        options.add_argument("about:blank")  # not the distribution's start page, which phones home
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        self._service = Service(
            cfg.driver or shutil.which("chromedriver") or "chromedriver",
            env=dict(os.environ, HOME=str(self.home)),
            log_output=subprocess.DEVNULL,
            popen_kw={"start_new_session": True, **launch.popen_options()},
        )
        try:
            self.driver = webdriver.Chrome(options=options, service=self._service)
        except WebDriverException as exc:
            self.kill()
            raise FetchError("browser", f"chromium did not start: {exc.msg or exc}") from exc
        self.tab = self.driver.current_window_handle

    @property
    def session_id(self) -> int:
        return self._service.process.pid

    def alive(self) -> bool:
        """The driver runs and so does the browser's main process (the one without ``--type=``)."""
        if self._service.process is None or self._service.process.poll() is not None:
            return False
        return self.main_pid() is not None

    def main_pid(self) -> int | None:
        for pid in browser_pool.live_processes(self.session_id, str(self.home)):
            command = browser_pool.cmdline(pid)
            if "--user-data-dir=" in command and "--type=" not in command:
                return pid
        return None

    def resident_bytes(self) -> int:
        return browser_pool.resident_bytes(browser_pool.live_processes(self.session_id, str(self.home)))

    def kill(self) -> None:
        process = self._service.process
        if process is not None:
            browser_pool.kill_tree(process.pid, str(self.home))
            process.wait()
        else:
            browser_pool.kill_tree(-1, str(self.home))
        shutil.rmtree(self.home, ignore_errors=True)

    def screenshot(self) -> bytes | None:
        try:
            return self.driver.get_screenshot_as_png()
        except WebDriverException:
            return None

    def probe(self, url: str, timeout: float, classify: Callable[[Response], Verdict], challenge_wait: float) -> FetchResult:
        """Load ``url`` in a wiped browser and follow any challenge to its outcome."""
        self.probes += 1
        self.wipe()
        driver = self.driver
        driver.set_page_load_timeout(timeout)
        netlog = NetworkLog(self.tab)
        driver.get_log("performance")  # drop the wipe's own events
        started = time.monotonic()
        try:
            driver.get(url)
        except TimeoutException as exc:
            raise FetchError("timeout", f"page did not load within {timeout:g} s") from exc
        netlog.add(driver.get_log("performance"))
        self._origins |= netlog.origins()
        documents = netlog.documents()
        failure = netlog.failure()
        if failure is not None and not documents:
            raise FetchError(net_error_reason(failure.error), f"{failure.url}: {failure.error}")
        if not documents:
            raise FetchError("browser", f"no document response for {url} in the performance log")
        landing_doc = next((doc for doc in documents if not doc.is_redirect), documents[-1])
        landing_timing = driver.execute_script(NAVIGATION_TIMING_JS) or {}
        landing = _response(landing_doc, driver.page_source)
        first = landing if documents[0] is landing_doc else _response(documents[0], "")

        def read_page() -> Response:
            netlog.add(driver.get_log("performance"))
            latest = [doc for doc in netlog.documents() if not doc.is_redirect][-1]
            return Response(driver.current_url, latest.status, latest.headers, driver.page_source)

        outcome = settle(landing, read_page, classify, challenge_wait, lambda: time.monotonic() - started)
        self._origins |= netlog.origins()
        redirects = tuple(doc.url for doc in documents if doc.is_redirect)
        return browser_result(first, redirects, landing_timing, outcome,
                              lambda: driver.execute_script(NAVIGATION_TIMING_JS) or {})

    def wipe(self) -> None:
        """Leave no connection, cookie, cache entry or storage from the previous probe.

        The previous page is frozen first (Page Lifecycle "frozen": its timers
        and callbacks stop), so none of its scripts can earn a cookie after the
        clearing, such as a challenge still counting down when its probe gave
        up.  Freezing costs far less than loading about:blank, which swaps
        renderer processes; about:blank stays the fallback for pages without
        ``chrome.benchmarking`` (error pages).
        """
        driver = self.driver
        for handle in driver.window_handles:
            if handle != self.tab:  # pop-ups the last page opened
                driver.switch_to.window(handle)
                driver.close()
        driver.switch_to.window(self.tab)
        if not driver.execute_script(CLOSE_CONNECTIONS_JS):
            driver.get("about:blank")
            driver.execute_script(CLOSE_CONNECTIONS_JS)
        driver.execute_cdp_cmd("Page.setWebLifecycleState", {"state": "frozen"})
        driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
        driver.execute_cdp_cmd("Network.clearBrowserCache", {})
        for origin in self._origins:
            driver.execute_cdp_cmd("Storage.clearDataForOrigin", {"origin": origin, "storageTypes": "all"})
        self._origins.clear()


def _response(document: DocumentResponse, body: str) -> Response:
    return Response(document.url, document.status, document.headers, body)


class ChromiumFetcher:
    """``fetch(url, lane, timeout)`` with a warm Chromium per lane."""

    name = "chromium"

    def __init__(self, cfg: BrowserFetcherConfig, classify: Callable[[Response], Verdict]):
        """Raises sandbox.SandboxError when Chromium cannot run sandboxed here (and ``cfg.sandbox`` wants it)."""
        self._cfg = cfg
        self._classify = classify
        self.launch = sandbox.plan(cfg.sandbox, cfg.binary)
        self._nss_db: Path | None = None
        self._nss_lock = threading.Lock()
        self._pool = BrowserPool(self._launch, cfg.recycle_after, cfg.memory_limit_bytes, self.name)

    @property
    def pool(self) -> BrowserPool:
        return self._pool

    @property
    def sandbox(self) -> str:
        """How its pages are confined: sandbox.NAMESPACES, SETUID or OFF (captcha_fetcher_info)."""
        return self.launch.sandbox

    def fetch(self, url: str, lane: Lane, timeout: float) -> FetchResult:
        return self._pool.probe(lane, url, timeout, self._classify, self._cfg.challenge_wait)

    def screenshot(self, lane: Lane) -> bytes | None:
        """PNG of the lane's page now: call it right after ``fetch`` on the same lane."""
        return self._pool.screenshot(lane)

    def close(self) -> None:
        self._pool.close()
        if self._nss_db is not None:
            shutil.rmtree(self._nss_db.parent, ignore_errors=True)

    def _launch(self, lane: Lane) -> ChromiumBrowser:
        return ChromiumBrowser(self._cfg, lane, self._trusted_nss_db(), self.launch)

    def _trusted_nss_db(self) -> Path | None:
        """The NSS database every browser of this fetcher copies (made once)."""
        if self._cfg.ca_file is None:
            return None
        with self._nss_lock:
            if self._nss_db is None:
                self._nss_db = trusted_nss_db(self._cfg.ca_file, Path(tempfile.mkdtemp(prefix="captcha-nssdb-")) / "nssdb")
        return self._nss_db
